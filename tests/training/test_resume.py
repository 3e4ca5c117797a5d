"""Resuming is exact: a run stopped anywhere, saved, and resumed from the file alone ends
bit for bit where the uninterrupted run ends, with the same callbacks, state and outputs."""

import json
import shutil

import numpy as np
import pytest

import charseq
from charseq import Corpus, Run, UsageError, hookimpl
from charseq.runs.settings import OPTIMIZERS
from conftest import InterruptAt, run_cli

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(60))
LR = {"sgd": 0.5, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01}
SETTINGS = {"hidden_size": 12, "seq_len": 8, "batch_size": 4, "epochs": 4, "optimizer": "adam", "lr": 0.01,
            "clip_norm": 5.0, "val_fraction": 0.1, "schedule": "cosine", "warmup": 3, "dropout": 0.2}


def _text_corpus():
    return Corpus.from_text("fox", TEXT)


def _windows_corpus():
    return Corpus.from_text("cycle", "ABCDEFGHIJ" * 3, random_windows=60)


WORDS = [word + str(i % 7) * (i % 3) for i, word in enumerate(TEXT.split()[:80])]


def _items_corpus():
    return Corpus.from_items("words", WORDS)




def _whole(tmp_path, make_corpus, settings, callbacks=(), name="whole.npz", model=None):
    result = Run.start(make_corpus(), model=model, out=tmp_path / name, callbacks=callbacks,
                       **{**SETTINGS, **settings}).fit()
    assert result.status in ("finished", "stopped")
    return tmp_path / name


def _resumed(tmp_path, make_corpus, stop_at, settings, callbacks=(), model=None):
    """Run until `stop_at` steps, save, and finish the run from the file in a new Run."""
    cut = tmp_path / "cut.npz"
    first = Run.start(make_corpus(), model=model, out=cut, callbacks=callbacks, extra_callbacks=[InterruptAt(stop_at)],
                      **{**SETTINGS, **settings}).fit()
    assert first.status == "interrupted" and first.step == stop_at and first.exit_code == 130
    Run.resume(cut, corpus=make_corpus()).fit()
    return cut


def assert_same_run_end(a, b):
    """Two checkpoints hold the same weights, optimizer state, progress and history."""
    a, b = charseq.load(a), charseq.load(b)
    assert (a.model.name, a.model.options()) == (b.model.name, b.model.options())
    assert set(a.model.params) == set(b.model.params)
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        assert np.array_equal(a.arrays[name], b.arrays[name]), name
    assert (a.training["step"], a.training["epoch"]) == (b.training["step"], b.training["epoch"])
    assert [(h["step"], h["loss"], h.get("val_loss")) for h in a.training["history"]] == \
        [(h["step"], h["loss"], h.get("val_loss")) for h in b.training["history"]]


@pytest.mark.parametrize("model", ["rnn", "rnn:layers=2", "gru", "gru:layers=2", "lstm", "lstm:layers=3",
                                   "transformer:layers=2,heads=2,context=8"])
@pytest.mark.parametrize("make_corpus", [_text_corpus, _windows_corpus, _items_corpus],
                         ids=["streams", "random-windows", "items"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("where", ["epoch-boundary", "mid-epoch"])
def test_resumed_run_ends_bit_for_bit_equal(tmp_path, optimizer, make_corpus, where, model):
    """For every bundled model (stacked ones with dropout between layers) and optimizer."""
    settings = {"optimizer": optimizer, "lr": LR[optimizer]}
    whole = _whole(tmp_path, make_corpus, settings, model=model)
    per_epoch = charseq.load(whole).training["step"] // SETTINGS["epochs"]
    stop_at = 2 * per_epoch if where == "epoch-boundary" else per_epoch + per_epoch // 2
    assert_same_run_end(whole, _resumed(tmp_path, make_corpus, stop_at, settings, model=model))


@pytest.mark.parametrize("model", ["gru", "transformer:layers=2,heads=2,context=8"])
def test_a_run_with_weight_decay_resumes_exactly(tmp_path, model):
    settings = {"weight_decay": 0.1}
    whole = _whole(tmp_path, _text_corpus, settings, model=model)
    per_epoch = charseq.load(whole).training["step"] // SETTINGS["epochs"]
    assert charseq.load(whole).run["config"]["weight_decay"] == 0.1
    assert_same_run_end(whole, _resumed(tmp_path, _text_corpus, per_epoch + per_epoch // 2, settings, model=model))


def test_the_comparison_can_fail(tmp_path):
    """Starting the second half afresh (the weights alone, without the rest of the state)
    ends elsewhere: the equality above is not vacuous."""
    whole = _whole(tmp_path, _text_corpus, {})
    cut = tmp_path / "cut.npz"
    Run.start(_text_corpus(), out=cut, extra_callbacks=[InterruptAt(7)], **SETTINGS).fit()
    fresh = Run.start(_text_corpus(), out=tmp_path / "fresh.npz", **SETTINGS)
    recurrent = "weight_hh_l0"  # of the text default, gru:layers=2
    fresh.model.params[recurrent] = charseq.load(cut).model.params[recurrent]
    fresh.fit()
    assert not np.array_equal(charseq.load(whole).model.params[recurrent],
                              charseq.load(tmp_path / "fresh.npz").model.params[recurrent])


EARLY = ["early-stopping:patience=1,min_delta=0.05,restore_best_weights=true"]


@pytest.mark.parametrize("checkpoint_first", [False, True], ids=["stopper-first", "checkpoint-first"])
def test_resumed_from_any_epoch_file_early_stopping_ends_the_same(tmp_path, checkpoint_first):
    """With early stopping and a file per epoch, resuming from any of the files (each saved
    once every callback has seen its epoch, in either order) stops at the same epoch with
    the same weights."""
    settings = {"epochs": 12, "lr": 0.05}
    template = str(tmp_path / "ck-{epoch:02d}.npz")
    callbacks = EARLY + [f"checkpoint:path={template}"]
    whole = _whole(tmp_path, _text_corpus, settings, callbacks[::-1] if checkpoint_first else callbacks)
    stopped = charseq.load(whole).training
    assert stopped["stop_training"] and stopped["epoch"] < 12  # it did stop early
    files = sorted(tmp_path.glob("ck-*.npz"))
    assert len(files) == stopped["epoch"]
    for f in files:
        out = tmp_path / f"from-{f.stem}.npz"
        result = Run.resume(f, corpus=_text_corpus(), out=out).fit()
        assert result.status == "stopped" and result.epoch == stopped["epoch"], f.name
        assert_same_run_end(whole, out)


class CopyEachSave:
    """Keeps a copy of what --checkpoint-every wrote at the end of each epoch."""

    def __init__(self, folder):
        self.folder = folder

    @hookimpl
    def on_step_end(self, trainer):
        if trainer.step_in_epoch == 1 and trainer.epoch > 0:
            shutil.copy(trainer.out, self.folder / f"every-{trainer.epoch:02d}.npz")

    @hookimpl
    def on_train_end(self, trainer):
        shutil.copy(trainer.out, self.folder / f"every-{trainer.epoch:02d}.npz")


def test_resumed_from_any_checkpoint_every_save_early_stopping_ends_the_same(tmp_path):
    (tmp_path / "copies").mkdir()
    settings = {"epochs": 12, "lr": 0.05}
    out = tmp_path / "run.npz"
    result = Run.start(_text_corpus(), out=out, callbacks=EARLY + ["checkpoint:every=1"],
                       extra_callbacks=[CopyEachSave(tmp_path / "copies")], **{**SETTINGS, **settings}).fit()
    assert result.status == "stopped"
    copies = sorted((tmp_path / "copies").iterdir())
    assert len(copies) == result.epoch
    for copy in copies:
        resumed = Run.resume(copy, corpus=_text_corpus(), out=tmp_path / f"from-{copy.stem}.npz").fit()
        assert resumed.epoch == result.epoch, copy.name
        assert_same_run_end(out, tmp_path / f"from-{copy.stem}.npz")


def test_a_finished_run_extends_with_more_epochs(tmp_path):
    whole = _whole(tmp_path, _text_corpus, {"epochs": 4, "schedule": "constant"})
    short = _whole(tmp_path, _text_corpus, {"epochs": 2, "schedule": "constant"}, name="short.npz")
    Run.resume(short, corpus=_text_corpus(), epochs=4).fit()
    assert_same_run_end(whole, short)


def test_the_metrics_file_is_written_anew_without_repeats(tmp_path):
    def steps(path):
        return [json.loads(line)["step"] for line in path.read_text().splitlines()]

    settings = {**SETTINGS, "eval_every": 5}
    Run.start(_text_corpus(), out=tmp_path / "whole.npz", callbacks=[f"metrics:path={tmp_path / 'whole.jsonl'}"],
              **settings).fit()
    cut = tmp_path / "cut.npz"
    Run.start(_text_corpus(), out=cut, callbacks=[f"metrics:path={tmp_path / 'cut.jsonl'}"],
              extra_callbacks=[InterruptAt(12)], **settings).fit()
    with (tmp_path / "cut.jsonl").open("a") as f:  # a line a crashed run wrote after its last checkpoint
        f.write(json.dumps({"step": 14, "loss": 1.0}) + "\n")
    Run.resume(cut, corpus=_text_corpus()).fit()  # the metrics callback comes back with the run
    assert steps(tmp_path / "cut.jsonl") == steps(tmp_path / "whole.jsonl")


# -- what a resumed run may change ------------------------------------------------------


@pytest.fixture
def cut_run(tmp_path):
    """A text run on a file, interrupted in its second epoch, with callbacks."""
    text = tmp_path / "fox.txt"
    text.write_text(TEXT * 3)
    cut = tmp_path / "cut.npz"
    Run.start(f"text:{text}", out=cut, callbacks=["metrics:path=" + str(tmp_path / "m.jsonl")] + EARLY,
              extra_callbacks=[InterruptAt(60)], **{**SETTINGS, "epochs": 6}).fit()
    return cut, text


def test_the_model_cannot_change_on_resume(cut_run):
    cut, _ = cut_run  # a text run: the default model, gru:layers=2
    Run.resume(cut, model="gru:layers=2")  # the run's own: accepted
    for other in ("gru", "rnn:layers=2", "lstm:layers=2"):
        with pytest.raises(UsageError, match=rf"model='{other}' differs from the resumed run's gru:layers=2; a "
                                             "resumed run keeps its model"):
            Run.resume(cut, model=other)


@pytest.mark.parametrize("flag,value", [("lr", 0.5), ("hidden_size", 16), ("seed", 3), ("optimizer", "sgd"),
                                        ("dropout", 0.0), ("seq_len", 16), ("val_fraction", 0.2)])
def test_changing_a_setting_on_resume_is_refused_naming_what_may_change(cut_run, flag, value):
    cut, _ = cut_run
    with pytest.raises(UsageError, match=r"a resumed run keeps its settings \(it may change epochs=… \(more\), "
                                         r"eval_every=…, out=…, corpus=…"):
        Run.resume(cut, **{flag: value})


def test_epochs_may_grow_but_not_below_those_done(cut_run):
    cut, _ = cut_run
    saved = charseq.load(cut)
    with pytest.raises(UsageError, match=r"--epochs 0 is fewer than the 1 the run has done|at least 1"):
        Run.resume(cut, epochs=0)
    assert Run.resume(cut, epochs=9).config.epochs == 9
    assert Run.resume(cut, eval_every=7).config.eval_every == 7
    assert charseq.load(cut).training == saved.training  # refusing or preparing writes nothing


def test_callbacks_come_back_and_can_be_dropped_or_added(cut_run, tmp_path):
    cut, _ = cut_run
    assert [e.key for e in Run.resume(cut).trainer.callbacks.entries] == ["metrics", "early-stopping"]
    dropped = Run.resume(cut, drop_callbacks=["early-stopping"], callbacks=[f"checkpoint:path={tmp_path}/x-{{epoch}}.npz"])
    assert [e.key for e in dropped.trainer.callbacks.entries] == ["metrics", "checkpoint"]
    again = Run.resume(cut, callbacks=EARLY)  # the same as the run has: nothing to add
    assert [e.key for e in again.trainer.callbacks.entries] == ["metrics", "early-stopping"]
    with pytest.raises(UsageError, match=r"already has callback 'early-stopping'.*drop_callbacks=\['early-stopping'\]"):
        Run.resume(cut, callbacks=["early-stopping:patience=5"])
    with pytest.raises(UsageError, match="has no callback 'checkpoint' to drop; it has: metrics, early-stopping"):
        Run.resume(cut, drop_callbacks=["checkpoint"])
    replaced = Run.resume(cut, drop_callbacks=["early-stopping"], callbacks=["early-stopping:patience=5"])
    assert replaced.trainer.callbacks.entries[1].callback.patience == 5


def test_a_moved_text_is_found_with_corpus_and_another_text_is_refused(cut_run, tmp_path):
    cut, text = cut_run
    moved = tmp_path / "elsewhere" / "renamed.txt"
    moved.parent.mkdir()
    text.rename(moved)
    with pytest.raises(UsageError, match="cannot load the run's corpus .*; if it moved, point at it with corpus=…"):
        Run.resume(cut)
    run = Run.resume(cut, corpus=f"text:{moved}")
    assert run.spec.corpus_source == f"text:{moved}"
    # The same length and the same symbols, in another order: another text.
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("".join(sorted(TEXT * 3)))
    with pytest.raises(UsageError, match="is not the text the run trained on"):
        Run.resume(cut, corpus=f"text:{shuffled}")
    # A same-named file in another place, at the recorded path.
    text.write_text(TEXT * 3 + "!")
    with pytest.raises(UsageError, match="is not the text the run trained on"):
        Run.resume(cut)


def test_resuming_from_another_directory_uses_the_recorded_files(cut_run, tmp_path, monkeypatch):
    """The run was started with relative paths; resumed from elsewhere it reads and writes
    the same files, not same-named ones in the new working directory."""
    cut, text = cut_run
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.chdir(folder)
    (folder / "fox.txt").write_text(TEXT * 3)
    run_cli("train", "--corpus", "text:fox.txt", "--hidden-size", 12, "--seq-len", 8, "--batch-size", 4,
            "--epochs", 2, "--metrics", "m.jsonl", "--out", "m.npz", "-q", "--sample-length", 0)
    other = tmp_path / "other"
    other.mkdir()
    (other / "fox.txt").write_text("a decoy of the same name")
    monkeypatch.chdir(other)
    result = run_cli("train", "--resume", folder / "m.npz", "--epochs", 3, "-q", "--sample-length", 0)
    assert result.exit_code == 0 and sorted(p.name for p in other.iterdir()) == ["fox.txt"]
    assert charseq.load(folder / "m.npz").training["epoch"] == 3
    assert len((folder / "m.jsonl").read_text().splitlines()) == 3


def test_resuming_with_another_blas_thread_count_is_a_warning(tmp_path):
    """BLAS splits its sums by thread count, so the same run on another count differs in the
    last digits: the run records its count, and a resume with another says so."""
    from threadpoolctl import threadpool_limits

    from charseq.blas import threads_in_use as blas_threads
    from conftest import InterruptAt

    with threadpool_limits(2, "blas"):
        if blas_threads() != 2:
            pytest.skip("BLAS here does not run two threads")
    with threadpool_limits(1, "blas"):
        Run.start(_items_corpus(), out=tmp_path / "cut.npz", extra_callbacks=[InterruptAt(5)], **SETTINGS).fit()
    assert charseq.load(tmp_path / "cut.npz").training["blas_threads"] == 1
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS))
    for threads, warned in ((2, True), (1, False)):
        copy = tmp_path / f"copy{threads}.npz"
        copy.write_bytes((tmp_path / "cut.npz").read_bytes())
        result = run_cli("train", "--resume", copy, "--corpus", f"lines:{words}", "--out", copy, "--threads", threads,
                         "-q", "--sample-length", 0)
        assert ("trained with 1 BLAS thread and goes on with 2" in result.stderr) == warned, result.stderr
