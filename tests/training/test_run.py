"""The run in combinations: copies and branches of a run, finished and stopped runs, options
spelled two ways, signals at awkward moments, the Python API used as a notebook would."""

import json
import shutil
import signal

import numpy as np
import pytest

import charseq
from charseq import Run, UsageError, hookimpl
from conftest import InterruptAt, run_cli

SMALL = {"hidden_size": 16, "seq_len": 8, "batch_size": 4}
ARGS = ["--hidden-size", 16, "--seq-len", 8, "--batch-size", 4, "-q", "--sample-length", 0]


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fox.txt").write_text("the quick brown fox jumps over the lazy dog. " * 100)
    return tmp_path


def same_weights(a, b) -> bool:
    a, b = charseq.load(a), charseq.load(b)
    return set(a.model.params) == set(b.model.params) and \
        all(np.array_equal(a.model.params[n], b.model.params[n]) for n in a.model.params)




def test_resuming_an_archived_copy_never_replaces_the_newer_model(place):
    run_cli("train", "--corpus", "text:fox.txt", *ARGS, "--epochs", 2, "--out", "model.npz")
    (place / "archive").mkdir()
    shutil.copy(place / "model.npz", place / "archive" / "v1.npz")
    run_cli("train", "--resume", "model.npz", "--epochs", 4, "-q")
    newer = (place / "model.npz").read_bytes()
    done = run_cli("train", "--resume", "archive/v1.npz", "-q")  # finished: nothing to do, nothing written
    assert "the run is complete (2 of 2 epochs)" in done.stdout and "nothing was written" in done.stdout
    refused = run_cli("train", "--resume", "archive/v1.npz", "--epochs", 3, "-q", ok=False)
    assert refused.exit_code == 2 and "holds a later branch of this run" in refused.stderr
    assert (place / "model.npz").read_bytes() == newer
    run_cli("train", "--resume", "archive/v1.npz", "--epochs", 3, "--out", "branch.npz", "-q")
    assert charseq.load(place / "branch.npz").training["epoch"] == 3 and (place / "model.npz").read_bytes() == newer


def test_a_finished_run_with_stateful_callbacks_saves_under_another_name(place):
    run_cli("train", "--corpus", "text:fox.txt", *ARGS, "--epochs", 2, "--patience", 3, "--checkpoint-every", 1,
            "--out", "p.npz")
    result = run_cli("train", "--resume", "p.npz", "--out", "p2.npz", "-q")
    assert "saved it to p2.npz" in result.stdout
    first, second = charseq.load(place / "p.npz"), charseq.load(place / "p2.npz")
    assert first.training == second.training and same_weights(place / "p.npz", place / "p2.npz")
    assert second.run["out"] == str(place / "p2.npz")


def test_evaluating_every_epoch_does_not_shift_the_epoch_numbers(place):
    """296 / 74 steps per epoch: --eval-every that divides an epoch used to label the epoch's
    metrics (and checkpoint names, and early stopping's summary) with the epoch before."""
    steps = Run.start("text:fox.txt", out="probe.npz", epochs=1, **SMALL).trainer.steps_per_epoch
    run_cli("train", "--corpus", "text:fox.txt", *ARGS, "--epochs", 3, "--eval-every", steps, "--metrics", "m.jsonl",
            "--callback", "checkpoint:path=c-{epoch}.npz", "--out", "m.npz")
    assert sorted(p.name for p in place.glob("c-*.npz")) == ["c-1.npz", "c-2.npz", "c-3.npz"]
    epochs = [json.loads(line)["epoch"] for line in (place / "m.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    for k in (1, 2, 3):
        assert charseq.load(place / f"c-{k}.npz").training["epoch"] == k


def test_early_stopping_names_the_epoch_whose_weights_it_saved(place):
    steps = Run.start("text:fox.txt", out="probe.npz", epochs=1, **SMALL).trainer.steps_per_epoch
    for every in ([], ["--eval-every", steps]):
        out = f"es{len(every)}.npz"
        result = run_cli("train", "--corpus", "text:fox.txt", *ARGS, "--epochs", 30, "--lr", 0.05, "--patience", 0,
                         "--min-delta", 0.02, *every, "--out", out)
        saved = charseq.load(place / out)
        weights_epoch = saved.progress["weights_epoch"]
        best = None  # Keras's rule: the last epoch that improved on the best by more than min_delta
        for entry in (h for h in saved.training["history"] if h["step"] % steps == 0):
            if best is None or entry["val_loss"] < best["val_loss"] - 0.02:
                best = entry
        assert weights_epoch == best["epoch"] < saved.training["epoch"], every
        assert f"with the weights of epoch {weights_epoch}, loss {best['loss']:.4g}, validation " \
               f"{best['val_loss']:.4g}" in result.stdout, (every, result.stdout)


def test_fitting_again_after_an_interruption_continues_exactly(place):
    """In a notebook: Ctrl-C, then run the cell again."""
    settings = {**SMALL, "epochs": 6, "lr": 0.05}
    callbacks = ["early-stopping:patience=1,min_delta=0.01,restore_best_weights=true"]
    Run.start("text:fox.txt", out="whole.npz", callbacks=callbacks, **settings).fit()
    run = Run.start("text:fox.txt", out="again.npz", callbacks=callbacks, extra_callbacks=[InterruptAt(step=200)],
                    **settings)
    assert run.fit().status == "interrupted"
    second = run.fit()
    assert second.status in ("finished", "stopped") and same_weights(place / "whole.npz", place / "again.npz")
    assert charseq.load(place / "whole.npz").training["history"] == charseq.load(place / "again.npz").training["history"] \
        or [h["val_loss"] for h in charseq.load(place / "whole.npz").training["history"]] == \
        [h["val_loss"] for h in charseq.load(place / "again.npz").training["history"]]


@pytest.mark.parametrize("corpus", ["alphabet", "digits"])
def test_random_windows_resume_exactly_from_before_the_first_step(place, corpus):
    Run.start(corpus, out="ref.npz", epochs=20).fit()
    first = Run.start(corpus, out="cut.npz", epochs=20, extra_callbacks=[InterruptAt(hook="on_train_begin")]).fit()
    assert first.status == "interrupted" and first.step == 0
    Run.resume("cut.npz").fit()
    assert same_weights(place / "ref.npz", place / "cut.npz")


class StopAt:
    def __init__(self, epoch):
        self.epoch = epoch

    @hookimpl
    def on_epoch_end(self, trainer, epoch):
        if epoch == self.epoch:
            trainer.stop_training = True


def test_a_run_stopped_by_an_unrecorded_callback_trains_on_without_it(place):
    result = Run.start("alphabet", out="api.npz", epochs=20, extra_callbacks=[StopAt(3)]).fit()
    assert result.status == "stopped" and result.epoch == 3
    assert Run.resume("api.npz", extra_callbacks=[StopAt(3)]).fit().status == "complete"  # the same callback: done
    assert Run.resume("api.npz", epochs=30).fit().epoch == 30  # without it, nothing asks the run to stop


def test_a_signal_as_the_last_epoch_ends_interrupts_nothing(place):
    result = Run.start("alphabet", out="last.npz", epochs=5, extra_callbacks=[InterruptAt(hook="on_epoch_end", epoch=5)])
    outcome = result.fit()
    assert outcome.status == "finished" and outcome.exit_code == 0 and outcome.epoch == 5


def test_a_branch_from_an_earlier_file_cannot_replace_the_runs_later_files(place):
    run_cli("train", "--corpus", "text:fox.txt", *ARGS, "--epochs", 4, "--metrics", "m.jsonl", "--callback",
            "checkpoint:path=runs/ck-{epoch}.npz", "--out", "m.npz")
    later = {p.name: p.read_bytes() for p in (place / "runs").iterdir()}
    metrics = (place / "m.jsonl").read_text()
    refused = run_cli("train", "--resume", "runs/ck-1.npz", "--epochs", 6, "--out", "branch.npz", ok=False)
    assert refused.exit_code == 2 and "holds the run this one branched from, further along" in refused.stderr
    run_cli("train", "--resume", "runs/ck-1.npz", "--epochs", 6, "--out", "branch.npz", "--drop-callback", "metrics",
            "--drop-callback", "checkpoint", "-q")
    assert {p.name: p.read_bytes() for p in (place / "runs").iterdir()} == later
    assert (place / "m.jsonl").read_text() == metrics
    # Unchanged, the same resume rewrites the same files with the same weights: allowed.
    run_cli("train", "--resume", "runs/ck-2.npz", "--out", "again.npz", "-q")
    assert same_weights(place / "again.npz", place / "m.npz") and same_weights(place / "runs/ck-4.npz",
                                                                                 place / "m.npz")


def test_an_interrupted_resume_of_an_earlier_file_never_moves_the_run_back(place):
    Run.start("text:fox.txt", out="m.npz", callbacks=["checkpoint:path=ck-{epoch}.npz"], epochs=4, **SMALL).fit()
    final = (place / "m.npz").read_bytes()
    result = Run.resume("ck-1.npz", extra_callbacks=[InterruptAt(step=200)]).fit()
    assert result.status == "interrupted" and result.saved != place / "m.npz"
    assert "holds this run further along" in result.message and str(result.saved.name) in result.message
    assert (place / "m.npz").read_bytes() == final and charseq.load(result.saved).training["step"] == 200


def test_encodings_are_compared_by_codec(place):
    run_cli("train", "--corpus", "text:fox.txt", *ARGS, "--epochs", 1, "--out", "t.npz")
    (place / "moved").mkdir()
    shutil.copy(place / "fox.txt", place / "moved" / "fox.txt")
    for spelling in ("utf8", "UTF-8", "utf-8"):
        run_cli("train", "--resume", "t.npz", "--corpus", "text:moved/fox.txt", "--encoding", spelling, "--epochs", 1)
        run_cli("train", "--resume", "t.npz", "--encoding", spelling, "--epochs", 1)
    refused = run_cli("train", "--resume", "t.npz", "--encoding", "latin-1", ok=False)
    assert refused.exit_code == 2 and "a resumed run may change --epochs" in refused.stderr


@pytest.mark.parametrize("first,again", [
    (["--callback", "early-stopping:patience=1,restore_best_weights=true"], ["--patience", 1]),
    (["--checkpoint-every", 1], ["--callback", "checkpoint"]),
    (["--callback", "early-stopping:baseline=nan"], ["--callback", "early-stopping:baseline=nan"]),
])
def test_the_same_callback_spelled_another_way_is_the_same(place, first, again):
    run_cli("train", "--corpus", "digits:20", "--epochs", 2, "--out", "d.npz", *first, "-q")
    run = Run.resume("d.npz")
    names = [e.key for e in run.trainer.callbacks.entries]
    result = run_cli("train", "--resume", "d.npz", "--epochs", 3, *again, "-q")
    assert result.exit_code == 0 and [e.key for e in Run.resume("d.npz").trainer.callbacks.entries] == names


def test_messages_for_api_and_plugin_mistakes(place, plugin_site):
    with pytest.raises(UsageError, match="callback 'early-stopping': mode must be 'min' or 'max'"):
        Run.start("alphabet", out="a.npz", callbacks=["early-stopping:mode=up"])
    with pytest.raises(UsageError, match="min_delta must be a finite number"):
        Run.start("alphabet", out="a.npz", callbacks=["early-stopping:min_delta=inf"])
    run_cli("train", "--corpus", "digits:20", "--epochs", 2, "--out", "d.npz", "--metrics", "d.jsonl", "-q")
    with pytest.raises(UsageError, match="epochs must be a whole number"):
        Run.resume("d.npz", epochs="25")
    assert [e.key for e in Run.resume("d.npz", drop_callbacks="metrics").trainer.callbacks.entries] == []
    assert [e.key for e in Run.resume("d.npz", drop_callbacks="metrics", callbacks="metrics:path=e.jsonl")
            .trainer.callbacks.entries] == ["metrics"]


PLUGGED = """
from charseq import hookimpl

class Quiet:
    '''Does nothing.'''
    @hookimpl
    def on_epoch_end(self, epoch):
        pass

@hookimpl
def register_callbacks(register):
    register("quiet", Quiet)
"""


def test_resuming_a_run_whose_callback_plugin_is_gone_says_what_to_do(place, plugin_site, monkeypatch):
    from conftest import install_fake_distribution

    install_fake_distribution(plugin_site, "throwaway-env", PLUGGED, "[charseq]\nquiet = throwaway_env\n")
    run_cli("train", "--corpus", "digits:20", "--epochs", 2, "--out", "d.npz", "--callback", "quiet", "-q")
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "")
    charseq.reload_plugins()
    result = run_cli("train", "--resume", "d.npz", "--epochs", 3, ok=False)
    assert result.exit_code == 2 and "uses callback 'quiet', which no installed plugin provides; install its plugin, " \
        "or leave it out: --drop-callback quiet" in result.stderr
    run_cli("train", "--resume", "d.npz", "--epochs", 3, "--drop-callback", "quiet", "-q")


# -- round two: lines of work, retraces, callbacks with odd state -------------------------


class Tally:
    """Counts steps in an array it resets in place at the start (a state with an array)."""

    def __init__(self):
        self.count = np.zeros(1, dtype=np.int64)
        self.best = np.array([np.inf], dtype=np.float32)  # inf: a best value not yet beaten

    @hookimpl
    def on_train_begin(self):
        self.count[...] = 0

    @hookimpl
    def on_step_end(self):
        self.count += 1

    def state_dict(self):
        return {"count": self.count, "best": self.best}

    def load_state_dict(self, state):
        self.count[...] = state["count"]


def test_an_extra_callbacks_array_state_is_saved_and_comes_back_whole(place):
    run = Run.start("alphabet", out="t.npz", epochs=4, extra_callbacks=[Tally(), InterruptAt(step=25)])
    assert run.fit().status == "interrupted"
    assert run.fit().status == "finished"  # fit() again: the in-place reset must not lose the count
    saved = charseq.load(place / "t.npz")
    assert saved.arrays["callback._Tally.count"][0] == 60 and np.isinf(saved.arrays["callback._Tally.best"][0])
    resumed = Run.resume("t.npz", epochs=6, extra_callbacks=[Tally()])
    resumed.fit()
    assert charseq.load(place / "t.npz").arrays["callback._Tally.count"][0] == 90


class Odd:
    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return {"x": self.value}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize("value", [np.array(["text"]), np.array([object()], dtype=object), {1, 2}])
def test_a_state_that_cannot_be_saved_stops_the_run_before_its_first_step(place, value):
    with pytest.raises(charseq.RunFailed, match="failed in state_dict: its state .*; nothing was trained"):
        Run.start("alphabet", out="o.npz", epochs=2, extra_callbacks=[Odd(value)]).fit()
    assert not (place / "o.npz").exists()


def test_an_unchanged_resume_of_an_earlier_file_with_checkpoint_every_retraces_the_run(place):
    Run.start("text:fox.txt", out="a.npz", callbacks=["metrics:path=a.jsonl", "checkpoint:every=1",
                                                       "checkpoint:path=ck/a-{epoch}.npz"], epochs=4, **SMALL).fit()
    final, log = (place / "a.npz").read_bytes(), (place / "a.jsonl").read_text()
    shutil.copy(place / "a.npz", place / "final.npz")
    run_cli("train", "--resume", "ck/a-2.npz", "-q")
    assert same_weights(place / "a.npz", place / "final.npz") and len((place / "a.jsonl").read_text().splitlines()) \
        == len(log.splitlines())
    # Interrupted on the way, the retrace leaves the later checkpoint and the longer log alone.
    (place / "a.npz").write_bytes(final)
    (place / "a.jsonl").write_text(log)
    result = Run.resume("ck/a-1.npz", extra_callbacks=[InterruptAt(step=150)]).fit()
    assert result.status == "interrupted" and result.saved != (place / "a.npz")
    assert (place / "a.npz").read_bytes() == final and (place / "a.jsonl").read_text() == log


def test_a_retrace_of_the_parent_cannot_replace_a_branchs_files(place):
    Run.start("text:fox.txt", out="a.npz", callbacks=["metrics:path=a.jsonl"], epochs=2, extra_callbacks=[
        InterruptAt(step=100)], **SMALL).fit()
    shutil.copy(place / "a.npz", place / "a-100.npz")
    Run.resume("a.npz").fit()
    Run.resume("a.npz", epochs=4).fit()  # a branch: a line of its own, which owns a.npz and a.jsonl now
    branch = (place / "a.npz").read_bytes(), (place / "a.jsonl").read_text()
    with pytest.raises(UsageError, match="holds a later branch of this run|not this run's|another run"):
        Run.resume("a-100.npz", out="old.npz")
    assert ((place / "a.npz").read_bytes(), (place / "a.jsonl").read_text()) == branch


def test_dropping_and_adding_the_same_stateful_callback_is_a_branch(place):
    early = "early-stopping:patience=2,min_delta=0.07,restore_best_weights=true"
    Run.start("text:fox.txt", out="a.npz", callbacks=["checkpoint:path=ck/a-{epoch}.npz", early], epochs=12,
              lr=0.05, **SMALL).fit()
    later = {p.name: p.read_bytes() for p in (place / "ck").iterdir()}
    with pytest.raises(UsageError, match="branched from, further along"):
        Run.resume("ck/a-2.npz", drop_callbacks=["early-stopping"], callbacks=[early])
    assert {p.name: p.read_bytes() for p in (place / "ck").iterdir()} == later


def test_force_never_puts_an_earlier_state_over_a_later_one(place):
    Run.start("text:fox.txt", out="a.npz", callbacks=["checkpoint:path=ck/a-{epoch}.npz"], epochs=3, **SMALL).fit()
    final = (place / "a.npz").read_bytes()
    result = Run.resume("ck/a-1.npz", force=True, extra_callbacks=[InterruptAt(step=200)]).fit()
    assert result.status == "interrupted" and (place / "a.npz").read_bytes() == final


def test_after_a_crash_the_log_beyond_the_checkpoint_is_kept_until_an_unchanged_resume_passes_it(place):
    """A crash between an evaluation and the save leaves log lines beyond the checkpoint.
    charseq cannot tell them from later work, so a branch (more epochs) refuses to replace
    them and says what to do; resumed unchanged, the run keeps them and goes on."""
    Run.start("text:fox.txt", out="k.npz", callbacks=["metrics:path=k.jsonl", "checkpoint:every=1"], epochs=2,
              eval_every=20, **SMALL).fit()
    saved_step = charseq.load(place / "k.npz").training["step"]
    with (place / "k.jsonl").open("a") as f:
        f.write(json.dumps({"run": charseq.load(place / "k.npz").run["id"], "step": saved_step + 20, "epoch": 2,
                            "loss": 9.0}) + "\n")
    with pytest.raises(UsageError, match="resume it unchanged first"):
        Run.resume("k.npz", epochs=3)
    Run.resume("k.npz", epochs=3, drop_callbacks=["metrics"], callbacks=["metrics:path=k2.jsonl"]).fit()
    steps = [json.loads(line)["step"] for line in (place / "k2.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and 9.0 not in [json.loads(x)["loss"] for x in
                                                       (place / "k2.jsonl").read_text().splitlines()]


def test_two_runs_made_at_once_cannot_both_write_one_file(place):
    first = Run.start("alphabet", out="one.npz", callbacks=["metrics:path=m.jsonl"], epochs=2)
    second = Run.start("alphabet", out="two.npz", callbacks=["metrics:path=m.jsonl"], epochs=2)
    first.fit()
    with pytest.raises(UsageError, match="holds another run's metrics"):
        second.fit()
    a = Run.resume("one.npz", epochs=3, out="x.npz")
    b = Run.resume("one.npz", epochs=4, out="x.npz")
    a.fit()
    with pytest.raises(UsageError, match="x.npz"):
        b.fit()


class FailAt:
    def __init__(self, epoch):
        self.epoch = epoch

    @hookimpl
    def on_epoch_end(self, epoch):
        if epoch == self.epoch:
            raise RuntimeError("the dashboard went away")


def test_a_callback_that_fails_at_an_epochs_end_costs_the_others_nothing(place):
    """Early stopping after the failing callback still sees that epoch, and the template's
    file for it is still written: resumed without the failing callback, the run ends as the
    run that never had it."""
    early = "early-stopping:patience=1,min_delta=0.02,restore_best_weights=true"
    settings = {**SMALL, "epochs": 12, "lr": 0.05}
    Run.start("text:fox.txt", out="ref.npz", callbacks=[early], **settings).fit()
    with pytest.raises(charseq.RunFailed, match="the dashboard went away; saved f.npz"):
        Run.start("text:fox.txt", out="f.npz", callbacks=[early, "checkpoint:path=ck-{epoch}.npz"],
                  extra_callbacks=[FailAt(2)], **settings).fit()
    assert (place / "ck-2.npz").exists()
    Run.resume("f.npz").fit()
    assert same_weights(place / "ref.npz", place / "f.npz")


def test_two_templates_that_make_the_same_names_are_refused(place):
    with pytest.raises(UsageError, match="could write over callback 'checkpoint'"):
        Run.start("alphabet", out="a.npz", callbacks=["checkpoint:path=ck/{epoch}.npz",
                                                      "checkpoint:path=ck/{epoch:d}.npz,keep_last=1"])


class SaveInto:
    def __init__(self, path):
        self.path = path

    @hookimpl
    def on_epoch_end(self, trainer):
        trainer.save_checkpoint(self.path)


def test_a_plugins_own_save_meets_the_same_rules(place):
    (place / "texts").mkdir()
    (place / "texts" / "a.txt").write_text("the cat sat on the mat. " * 100)
    with pytest.raises(charseq.RunFailed, match="lies where the corpus is read from"):
        Run.start("text:texts", out="a.npz", extra_callbacks=[SaveInto(place / "texts" / "snap.npz")], epochs=2,
                  **SMALL).fit()
    assert sorted(p.name for p in (place / "texts").iterdir()) == ["a.txt"]


def test_the_time_before_an_interruption_counts_in_the_epochs_speed(place):
    Run.start("text:fox.txt", out="a.npz", epochs=2, extra_callbacks=[InterruptAt(step=100)], **SMALL).fit()
    before = charseq.load(place / "a.npz").training["since_eval"]
    assert before[1] == 100 and before[2] > 0
    Run.resume("a.npz").fit()
    epoch_1 = charseq.load(place / "a.npz").training["history"][0]
    assert epoch_1["seconds"] >= before[2]


def test_epochs_may_not_end_a_run_inside_the_epoch_it_is_in(place):
    Run.start("alphabet", out="a.npz", epochs=4, extra_callbacks=[InterruptAt(step=20)]).fit()
    with pytest.raises(UsageError, match="would end the run inside epoch 2"):
        Run.resume("a.npz", epochs=1)


# -- round three --------------------------------------------------------------------------


def test_fitting_a_resumed_run_again_never_puts_back_what_it_was_resumed_from(place):
    Run.start("alphabet", out="A.npz", epochs=5, callbacks=["checkpoint:path=runs/c-{epoch}.npz"]).fit()
    run = Run.resume("runs/c-2.npz", out="A.npz")
    run.fit()
    after = (place / "A.npz").read_bytes()
    run.fit()  # a notebook cell run again
    assert charseq.load(place / "A.npz").training["step"] == 75
    longer = Run.resume("A.npz", epochs=8, out="B.npz")
    longer.fit()
    longer.fit()
    assert charseq.load(place / "B.npz").training["epoch"] == 8 and after


def test_two_branches_from_one_checkpoint_cannot_undo_each_other(place):
    Run.start("alphabet", out="A.npz", epochs=2).fit()
    first, second = Run.resume("A.npz", epochs=20), Run.resume("A.npz", epochs=8)
    first.fit()
    with pytest.raises(UsageError, match="A.npz"):
        second.fit()
    assert charseq.load(place / "A.npz").training["epoch"] == 20


def test_force_does_not_let_a_branch_undo_its_parents_later_work(place):
    Run.start("alphabet", out="A.npz", epochs=10, callbacks=["metrics:path=m.jsonl",
                                                             "checkpoint:path=runs/c-{epoch:03d}.npz"]).fit()
    files = {p: p.read_bytes() for p in [place / "A.npz", place / "m.jsonl", *sorted((place / "runs").iterdir())]}
    for force in (False, True):
        with pytest.raises(UsageError, match="a branch writes elsewhere"):
            Run.resume("runs/c-005.npz", epochs=7, force=force)
    Run.resume("runs/c-005.npz", epochs=12, out="B.npz", drop_callbacks=["metrics", "checkpoint"]).fit()
    with pytest.raises(UsageError, match="a branch writes elsewhere"):  # nor a grandchild its grandparent's
        Run.resume("B.npz", epochs=14, callbacks=["metrics:path=m.jsonl"])
    assert {p: p.read_bytes() for p in files} == files


def test_a_callback_added_on_resuming_replaces_no_file_that_is_there(place, plugin_site):
    from conftest import install_fake_distribution

    install_fake_distribution(plugin_site, "throwaway-env", PLUGGED.replace("class Quiet:", "class Quiet:\n"
                                                                            "    output_options = ['path']\n"
                                                                            "    def __init__(self, path=None): pass"),
                              "[charseq]\nquiet = throwaway_env\n")
    (place / "notes.txt").write_text("precious notes")
    run_cli("train", "--corpus", "alphabet", "--epochs", 3, "--out", "a.npz", "-q")
    result = run_cli("train", "--resume", "a.npz", "--epochs", 4, "--callback", "quiet:path=notes.txt", "-q", ok=False)
    assert result.exit_code == 2 and "already exists and is not this run's" in result.stderr
    assert (place / "notes.txt").read_text() == "precious notes"


def test_symlinks_are_neither_followed_to_nothing_nor_a_way_around_the_checks(place):
    (place / "planted.npz").symlink_to(place / "victim" / "deep" / "planted.npz")
    with pytest.raises(UsageError, match="symlink to a place that does not exist"):
        Run.start("alphabet", out="planted.npz", epochs=2)
    assert not (place / "victim").exists()
    (place / "runs").mkdir()
    (place / "rl").symlink_to("runs")
    with pytest.raises(UsageError, match="could write over"):
        Run.start("alphabet", out="rl/c-2.npz", epochs=3, callbacks=["checkpoint:path=runs/c-{epoch}.npz"])


def test_a_glob_corpus_reaching_a_directory_through_a_link_keeps_outputs_out_of_it(place):
    (place / "cdir").mkdir()
    (place / "other").mkdir()
    (place / "cdir" / "a.txt").write_text("the cat sat on the mat. " * 100)
    (place / "other" / "b.txt").write_text("the dog sat on the log. " * 100)
    (place / "cdir" / "sub").symlink_to("../other")
    with pytest.raises(UsageError, match="lies where the corpus is read from"):
        Run.start("text:cdir/**/*.txt", out="other/y.txt", epochs=2, **SMALL)


def test_odd_crafted_states_and_symbols_are_one_line(place):
    from conftest import members_of, resign

    Run.start("alphabet", out="a.npz", epochs=4, extra_callbacks=[InterruptAt(step=20)]).fit()
    members = members_of(place / "a.npz")
    del members["trainer.order"]  # stopped mid-epoch, without the order of the epoch's windows
    with open(place / "a.npz", "wb") as f:
        np.savez(f, **members)
    resign(place / "a.npz", lambda m: m["arrays"].pop("trainer.order"))
    with pytest.raises(UsageError, match="lacks the order of its windows"):
        Run.resume("a.npz", corpus="alphabet", out="a.npz").fit()
    Run.start("alphabet", out="v.npz", epochs=1).fit()
    resign(place / "v.npz", lambda m: m.update(vocabulary=["\ud800", *m["vocabulary"][1:]]))
    result = run_cli("generate", "v.npz", "--length", 5, ok=False)
    assert result.exit_code == 2 and "lone surrogate" in result.stderr


def test_a_finished_run_named_another_way_is_not_rewritten(place):
    Run.start("alphabet", out="F.npz", epochs=2).fit()
    (place / "sub").mkdir()
    before = (place / "F.npz").read_bytes()
    result = run_cli("train", "--resume", "./sub/../F.npz", "--out", "./F.npz", "-q")
    assert "nothing was written" in result.stdout and (place / "F.npz").read_bytes() == before


def test_what_a_killed_save_leaves_does_not_block_a_template(place):
    Run.start("alphabet", out="A.npz", epochs=3, callbacks=["checkpoint:path=runs/{epoch:03d}"]).fit()
    (place / "runs" / ".003.1a2b3c4d.tmp").write_bytes(b"half a checkpoint")
    run_cli("train", "--resume", "runs/002", "-q")


@pytest.mark.parametrize("args,words", [
    (["--out", "x.npz/."], "names a directory"),
    (["--temperature", "1e39"], "at most 1e6"),
])
def test_more_odd_options_are_one_line(place, alphabet_checkpoint, args, words):
    command = ["generate", alphabet_checkpoint] if "--temperature" in args else ["train", "--corpus", "alphabet"]
    result = run_cli(*command, *args, ok=False)
    assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1


def test_braces_in_out_are_plain_characters(place):
    Run.start("alphabet", out="a{epoch}.npz", epochs=2).fit()
    assert (place / "a{epoch}.npz").is_file()


def test_eval_into_a_full_disk_is_an_error(place, alphabet_checkpoint):
    import os
    import subprocess
    import sys

    result = subprocess.run(f"{sys.executable} -m charseq eval {alphabet_checkpoint} --corpus alphabet --json "
                            "> /dev/full", shell=True, cwd=place, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CHARSEQ_LOAD_PLUGINS": ""})
    assert result.returncode == 1 and "cannot write to standard output" in result.stderr


# -- round four -----------------------------------------------------------------------------


class AbortMidStep:
    """Presses Ctrl-C twice inside a step: the second one lands before the step is counted."""

    @hookimpl
    def on_step_end(self, trainer, step):
        if step == 5:
            import os

            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)


def test_a_run_aborted_mid_step_will_not_fit_again_from_memory(place):
    run = Run.start("alphabet", out="a.npz", epochs=3, extra_callbacks=[AbortMidStep()])
    with pytest.raises(charseq.Aborted):
        run.fit()
    with pytest.raises(UsageError, match="aborted part way through a step.*Run.resume"):
        run.fit()


def test_a_sighup_saves_the_run_like_sigterm(place):
    import subprocess
    import sys

    (place / "big.txt").write_text("the quick brown fox jumps over the lazy dog. " * 4000)
    process = subprocess.Popen([sys.executable, "-m", "charseq", "train", "--corpus", "text:big.txt", "--epochs", "50",
                                "--hidden-size", "16", "--seq-len", "8", "--batch-size", "4", "--out", "h.npz"],
                               cwd=place, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**__import__("os").environ, "CHARSEQ_LOAD_PLUGINS": ""})
    line = process.stdout.readline()
    while line and not line.startswith("epoch"):
        line = process.stdout.readline()
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 129 and stderr.startswith("interrupted at step"), stderr
    assert charseq.load(place / "h.npz").training["epoch"] >= 1


def test_an_interrupted_run_with_a_plugin_file_fits_again(place, plugin_site):
    from conftest import install_fake_distribution

    install_fake_distribution(plugin_site, "throwaway-env", PLUGGED.replace("class Quiet:", "class Quiet:\n"
                                                                            "    output_options = ['path']\n"
                                                                            "    def __init__(self, path=None):\n"
                                                                            "        open(path, 'a').close()"),
                              "[charseq]\nquiet = throwaway_env\n")
    run = Run.start("alphabet", out="a.npz", epochs=3, callbacks=["quiet:path=q.log"],
                    extra_callbacks=[InterruptAt(step=20)])
    assert run.fit().status == "interrupted"
    assert run.fit().status == "finished"


def test_a_directory_where_a_checkpoint_template_will_write_is_refused_at_once(place):
    (place / "ck" / "e0003.npz").mkdir(parents=True)
    with pytest.raises(UsageError, match="which is a directory"):
        Run.start("alphabet", out="a.npz", epochs=5, callbacks=["checkpoint:path=ck/e{epoch:04d}.npz"])
