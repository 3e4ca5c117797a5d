"""Nothing a user does loses a run: a callback that raises, a save that fails, a closed pipe,
Ctrl-C at start-up, a second SIGTERM. Each is met as a user meets it: through the CLI,
most in a process of its own."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import charseq
from charseq import Run, hookimpl
from conftest import InterruptAt, install_fake_distribution, run_cli

SMALL = ["--hidden-size", 16, "--seq-len", 8, "--batch-size", 4, "--threads", 1, "--sample-length", 0]


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "CHARSEQ_LOAD_PLUGINS": ""}


def _run(*args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "charseq", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fox.txt").write_text("the quick brown fox jumps over the lazy dog. " * 400)
    return tmp_path


PICKY = """
from charseq import UsageError, hookimpl

class Picky:
    '''Refuses, at step 30, a setting it only then finds wrong: as the plugin guide says to.'''
    @hookimpl
    def on_step_end(self, trainer, step):
        if step == 30:
            raise UsageError("picky needs a larger batch")

class BadState:
    '''Keeps state that JSON cannot hold.'''
    def state_dict(self):
        return {"seen": {1, 2}}
    def load_state_dict(self, state):
        pass

class Early:
    '''Fails before training starts.'''
    @hookimpl
    def on_train_begin(self, trainer):
        raise RuntimeError("no connection to the dashboard")

@hookimpl
def register_callbacks(register):
    register("picky", Picky)
    register("bad-state", BadState)
    register("early", Early)
"""


def test_a_callback_raising_usage_error_saves_the_run_and_names_the_plugin(plugin_site, place):
    install_fake_distribution(plugin_site, "throwaway-signals", PICKY, "[charseq]\npicky = throwaway_signals\n")
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", "picky", "-q", ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr == ("Error: callback 'picky' of plugin 'picky' (package 'throwaway-signals') failed in "
                             "on_step_end: picky needs a larger batch; saved m.npz at step 30; continue with: "
                             "charseq train --resume m.npz --drop-callback picky\n")
    assert charseq.load(place / "m.npz").training["step"] == 30
    run_cli("train", "--resume", "m.npz", "--drop-callback", "picky", "-q", "--sample-length", 0)
    assert charseq.load(place / "m.npz").training["epoch"] == 180


@pytest.mark.parametrize("name,words", [("bad-state", "its state cannot be saved as JSON"),
                                        ("early", "failed in on_train_begin: RuntimeError: no connection")])
def test_a_callback_that_cannot_work_stops_the_run_before_its_first_step(plugin_site, place, name, words):
    install_fake_distribution(plugin_site, "throwaway-signals", PICKY, "[charseq]\npicky = throwaway_signals\n")
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", name, ok=False)
    assert result.exit_code in (1, 2) and words in result.stderr and "nothing was trained" in result.stderr
    assert "(package 'throwaway-signals')" in result.stderr and "epoch   1/" not in result.stdout
    assert not (place / "m.npz").exists()


@pytest.mark.parametrize("callback,words", [
    ("checkpoint:path=x-{val_loss:.3f}.npz", "checkpoint path 'x-{val_loss:.3f}.npz' uses {val_loss}, which this "
                                             "run does not have"),
    ("early-stopping:monitor=val_loss", "cannot monitor 'val_loss'"),
    ("checkpoint:path=x-{loss:d}.npz", "is malformed"),
    ("checkpoint:path=/proc/x-{epoch}.npz", "lies in /proc"),
    ("checkpoint:path=x-{epoch!s}.npz", "is not a plain field"),
    ("checkpoint:path=x-{epoch.__class__}.npz", "is not a plain field"),
    ("checkpoint:path=x-{epoch:5000}.npz", "is not a plain field"),
    ("checkpoint:path=x-{epoch:0>300}.npz", "makes names a file system cannot hold"),
    ("checkpoint:path=sub/{epoch:.>2}/../x.npz", "climbs out of a directory after a field"),
    ("checkpoint:every=abc", "every must be a whole number, got 'abc'"),
    ("checkpoint:keep_last=-1", "keep_last must be 0"),
    ("metrics:path=", "option 'path' has no value"),
    ("early-stopping:patience=2,patience=3", "given twice"),
])
def test_what_would_fail_at_an_epochs_end_fails_before_the_first_step(place, callback, words):
    """The alphabet task holds nothing out, so {val_loss} and monitor=val_loss cannot work."""
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", callback, ok=False)
    assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "epoch   1/" not in result.stdout and not (place / "m.npz").exists()


def test_val_loss_in_a_template_works_when_text_is_held_out(place):
    run_cli("train", "--corpus", "text:fox.txt", *SMALL, "--epochs", 2, "--out", "m.npz", "-q",
            "--callback", "checkpoint:path=ck-{epoch}-{val_loss:.2f}.npz")
    assert len(list(place.glob("ck-2-*.npz"))) == 1




def test_a_full_disk_at_the_end_saves_the_run_elsewhere_and_it_resumes_exactly(place, monkeypatch):
    """The disk holding --out fills up: the last checkpoint there stays whole, the run is
    saved in the working directory instead, and the command it prints finishes the run
    bit for bit as if nothing had happened."""
    (place / "runs").mkdir()
    args = ["--corpus", "text:fox.txt", *SMALL, "--epochs", 3, "-q"]
    run_cli("train", *args, "--out", "whole.npz")
    Run.start("text:fox.txt", out="runs/m.npz", extra_callbacks=[InterruptAt(100)], hidden_size=16, seq_len=8,
              batch_size=4, epochs=3).fit()
    before = (place / "runs" / "m.npz").read_bytes()

    import charseq.files

    real = charseq.files._new_file

    def full(directory, name):
        if Path(directory).resolve() == (place / "runs").resolve():
            raise OSError(28, "No space left on device")
        return real(directory, name)

    monkeypatch.setattr(charseq.files, "_new_file", full)
    result = run_cli("train", "--resume", "runs/m.npz", "-q", "--sample-length", 0, ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    rescued = sorted(place.glob("m.rescued-step*.npz"))
    assert len(rescued) == 1
    assert result.stderr == (f"Error: cannot write 'runs/m.npz': No space left on device; saved the run to "
                             f"{rescued[0].name} instead; continue with: charseq train --resume {rescued[0].name} "
                             f"--out runs/m.npz\n")
    assert (place / "runs" / "m.npz").read_bytes() == before
    monkeypatch.setattr(charseq.files, "_new_file", real)  # room again
    run_cli("train", "--resume", rescued[0].name, "--out", "runs/m.npz", "-q", "--sample-length", 0)
    a, b = charseq.load(place / "whole.npz"), charseq.load(place / "runs" / "m.npz")
    assert set(a.model.params) == set(b.model.params)
    assert all(np.array_equal(a.model.params[n], b.model.params[n]) for n in a.model.params)


def _limited(kilobytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kilobytes * 1024, kilobytes * 1024))
    return limit


def test_a_file_size_limit_everywhere_is_one_line_and_loses_nothing(place):
    """With no file allowed to grow past 16 KB, no checkpoint can be written anywhere: the
    error says so in one line (no 'internal error'), and the last checkpoint stays whole."""
    first = _run("train", "--corpus", "alphabet", "--epochs", 2, "--out", "m.npz", "-q", cwd=place)
    assert first.returncode == 0, first.stderr
    before = (place / "m.npz").read_bytes()
    assert len(before) > 16 * 1024
    result = _run("train", "--resume", "m.npz", "--epochs", 4, "-q", cwd=place, preexec_fn=_limited(16))
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr
    assert result.stderr.startswith("Error: cannot write 'm.npz': File too large; nor could the run be saved anywhere")
    assert result.stderr.rstrip().endswith("m.npz keeps its last whole checkpoint")
    assert (place / "m.npz").read_bytes() == before
    assert sorted(p.name for p in place.iterdir() if p.name.startswith(".")) == []


def test_a_metrics_file_that_cannot_be_written_is_a_warning_and_training_goes_on(place, monkeypatch):
    real_open = Path.open

    def full_disk(self, mode="r", *args, **kwargs):
        if self.name == "m.jsonl" and "a" in mode:
            return open("/dev/full", "a")  # every write fails with "No space left on device"
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--metrics", "m.jsonl", "-q")
    assert result.stderr == ("charseq: warning: cannot write metrics to m.jsonl (No space left on device); "
                             "training goes on without them\n")
    assert charseq.load(place / "m.npz").training["epoch"] == 180


def test_train_into_a_closed_pipe_keeps_training_and_saves(place):
    """`charseq train ... | head -1`: head leaves after the first line; training does not."""
    command = (f"{sys.executable} -m charseq train --corpus digits --epochs 60 --out m.npz --threads 1 | head -1; "
               "echo \"status ${PIPESTATUS[0]}\" >&2")
    result = subprocess.run(["bash", "-c", command], cwd=place, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.startswith("training on digits") and result.stdout.count("\n") == 1
    assert result.stderr == "status 0\n", result.stderr
    assert charseq.load(place / "m.npz").training["epoch"] == 60


def test_generate_into_a_closed_pipe_ends_quietly(place, alphabet_checkpoint):
    for samples in ("1", "3"):
        command = (f"{sys.executable} -m charseq generate {alphabet_checkpoint} --length 300000 --num-samples "
                   f"{samples} | head -c 10; echo \" status ${{PIPESTATUS[0]}}\" >&2")
        result = subprocess.run(["bash", "-c", command], cwd=place, env=_env(), capture_output=True, text=True,
                                timeout=300)
        assert len(result.stdout) == 10 and result.stderr == " status 0\n", result.stderr


class AnotherRunTakesOut:
    """At the end of epoch `epoch`, another run trains to the end and saves to the same --out:
    two runs started with one --out, the other one finishing first."""

    def __init__(self, epoch: int, callbacks=(), step: int | None = None):
        self.epoch, self.callbacks, self.step = epoch, callbacks, step

    def _other_run(self) -> None:
        Run.start("digits", out="m.npz", epochs=2, seed=1, callbacks=self.callbacks).fit()

    @hookimpl
    def on_train_begin(self):
        if self.step == 0:  # after this run's checks, before its own callbacks start (this one is first)
            self._other_run()

    @hookimpl
    def on_step_end(self, step):
        if step == self.step:  # (before this run's first evaluation: its metrics log is still empty)
            self._other_run()

    @hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch and self.step is None:
            self._other_run()


@pytest.mark.parametrize("every", [None, 2, "interrupted", "interrupted, one metrics log"])
def test_the_advice_of_a_run_whose_out_another_run_took_works_when_followed(place, every):
    """Another run's checkpoint at --out is never replaced: the run is saved elsewhere, and
    what it says to do next (at its end: nothing unless more epochs; mid-run or interrupted:
    go on in that file, with the metrics log too when the other run took it) works."""
    if str(every).startswith("interrupted"):
        metrics = [("metrics", {"path": "m.jsonl"})] if "metrics" in every else []
        result = Run.start("digits", out="m.npz", epochs=3, callbacks=metrics,
                           extra_callbacks=[AnotherRunTakesOut(1, metrics, step=1 if metrics else None),
                                            InterruptAt(hook="on_epoch_end", epoch=2)]).fit()
        assert result.status == "interrupted"
        message = result.message
        logs = (place / "m.jsonl").read_bytes() if metrics else None
    else:
        callbacks = [("checkpoint", {"every": every})] if every else []
        with pytest.raises(charseq.RunFailed) as failed:
            Run.start("digits", out="m.npz", epochs=3, callbacks=callbacks,
                      extra_callbacks=[AnotherRunTakesOut(1 if every else 3)]).fit()
        message = str(failed.value)
    theirs = (place / "m.npz").read_bytes()
    (rescued,) = place.glob("m.rescued-step*.npz")
    assert rescued.name in message
    if every is None:
        assert "continue with" not in message and charseq.load(rescued).training["epoch"] == 3
    else:  # the advice is the API's call (the CLI's command is checked through the CLI, below)
        advice = message.split("continue with: ", 1)[1]
        moved = f", drop_callbacks=['metrics'], callbacks=[('metrics', {{'path': '{rescued.stem}.jsonl'}})]" \
            if "log" in str(every) else ""
        assert advice == f"Run.resume('{rescued.name}', out='{rescued.name}'{moved})"
        eval(advice, {"Run": Run}).fit()
        assert charseq.load(rescued).training["epoch"] == 3
    assert (place / "m.npz").read_bytes() == theirs
    if every == "interrupted, one metrics log":
        assert (place / "m.jsonl").read_bytes() == logs  # the other run's, as it left it
        assert len((place / rescued.with_suffix(".jsonl").name).read_text().splitlines()) == 3


def test_a_metrics_log_another_run_wrote_since_the_check_is_never_replaced(place):
    """Two runs started alike: the other one wrote the log between this run's check and its
    metrics callback's start. The log stays the other run's, and this run trains on."""
    metrics = [("metrics", {"path": "m.jsonl"})]
    with pytest.warns(charseq.CharseqWarning, match="holds another run's metrics now"):
        result = Run.start("digits", out="mine.npz", epochs=2, callbacks=metrics,
                           extra_callbacks=[AnotherRunTakesOut(0, metrics, step=0)]).fit()
    assert result.status == "finished"
    theirs = [json.loads(line) for line in (place / "m.jsonl").read_text().splitlines()]
    assert {line["run"] for line in theirs} == {charseq.load(place / "m.npz").run["id"]}


def test_ctrl_c_while_starting_up_prints_no_traceback(place):
    """Ctrl-C at moments spread over start-up: importing, loading plugins, encoding a large
    text into the cache. Whenever it lands, no traceback; exit 130 (or the default
    SIGINT death, if it lands before Python can handle it)."""
    big = place / "big.txt"
    big.write_text("".join(chr(0x3b1 + i % 20) + "abc " for i in range(2_000_000)))  # not ASCII: slow to encode
    for delay in (0.1, 0.2, 0.35, 0.6, 1.0):  # Python itself takes about 0.05 s to start
        process = subprocess.Popen([sys.executable, "-m", "charseq", "train", "--corpus", "text:big.txt", "--out",
                                    f"m{delay}.npz"], cwd=place, env={**_env(), "CHARSEQ_CACHE": str(place / f"c{delay}")},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=120)
        finally:  # a lost signal must not leave a run training on behind the tests
            if process.poll() is None:
                process.kill()
                process.wait()
        assert "Traceback" not in stderr and "Error" not in stderr, (delay, stderr)
        assert process.returncode in (130, -signal.SIGINT), (delay, process.returncode, stderr)


DOUBLE_TERM = """
import os, signal
from charseq import hookimpl

class DoubleTerm:
    '''Sends SIGTERM twice at step 5, as an impatient service manager would.'''
    @hookimpl
    def on_step_end(self, trainer, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

@hookimpl
def register_callbacks(register):
    register("double-term", DoubleTerm)
"""


def test_a_second_sigterm_exits_143(plugin_site, place):
    install_fake_distribution(plugin_site, "throwaway-signals", DOUBLE_TERM, "[charseq]\nsignals = throwaway_signals\n")
    env = {**_env(), "CHARSEQ_LOAD_PLUGINS": "throwaway-signals",
           "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "charseq", "train", "--corpus", "alphabet", "--out", "m.npz",
                             "--callback", "double-term", "-q"], cwd=place, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 143, result.stderr
    assert result.stderr == "aborted at step 5, without saving\n"
    assert not (place / "m.npz").exists()


def test_a_sampler_that_returns_nonsense_is_named(plugin_site, alphabet_checkpoint):
    source = '''
import numpy as np
from charseq import hookimpl

class Floats:
    """Returns probabilities instead of ids."""
    def __call__(self, logits, rng):
        return np.ones(len(logits)) * 0.5

class Wide:
    """Returns one id too many."""
    def __call__(self, logits, rng):
        return np.zeros(len(logits) + 1, dtype=int)

class Far:
    """Returns an id past the vocabulary."""
    def __call__(self, logits, rng):
        return np.full(len(logits), 1000)

@hookimpl
def register_samplers(register):
    register("floats", Floats)
    register("wide", Wide)
    register("far", Far)
'''
    install_fake_distribution(plugin_site, "throwaway-greedy", source, "[charseq]\nodd = throwaway_greedy\n")
    for name, words in (("floats", "float64 values; it must return integer ids"),
                        ("wide", "shape (2,); it must return one id per sample, shape (1,)"),
                        ("far", "id 1000; ids lie in 0..25")):
        result = run_cli("generate", alphabet_checkpoint, "--sampler", name, ok=False)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert f"sampler {name!r} of plugin 'odd' (package 'throwaway-greedy') misbehaved" in result.stderr
        assert words in result.stderr, result.stderr


def test_a_crafted_callback_state_that_does_not_fit_the_model_is_refused_before_training(tmp_path):
    from conftest import members_of, resign

    out = tmp_path / "m.npz"
    run_cli("train", "--corpus", "digits", "--epochs", 3, "--patience", 5, "--out", out, "-q", "--sample-length", 0)
    arrays = members_of(out)
    wrong = {name: np.zeros((3, 3), dtype=np.float32) for name in arrays if name.startswith("callback.early-stopping.")}
    assert wrong  # early stopping keeps the best weights

    def shapes(metadata):
        for name in wrong:
            metadata["arrays"][name]["shape"] = [3, 3]

    resign(out, shapes, wrong)
    before = out.read_bytes()
    result = run_cli("train", "--resume", out, "--corpus", "digits", "--out", out, "--epochs", 6, ok=False)
    assert result.exit_code == 2 and "does not fit this model" in result.stderr
    assert "nothing new was trained" in result.stderr and out.read_bytes() == before
    assert json.loads(run_cli("eval", out, "--corpus", "digits", "--json").output)["loss"] >= 0


class TurnsBad:
    """Keeps a state JSON can hold, until step 20."""

    def __init__(self):
        self.step = 0

    @hookimpl
    def on_step_end(self, step):
        self.step = step

    def state_dict(self):
        return {"step": self.step} if self.step < 20 else {"seen": {self.step}}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize("interrupt", [None, 40], ids=["to-the-end", "ctrl-c"])
def test_a_callback_state_that_turns_unsavable_mid_run_still_gets_the_run_saved(place, interrupt):
    """From step 20 the callback's state cannot be saved: every save leaves it out, the run
    goes on, and the end (or Ctrl-C) saves it and says how to continue without it."""
    extra = [TurnsBad()] + ([InterruptAt(step=interrupt)] if interrupt else [])
    run = Run.start("alphabet", out="m.npz", callbacks=["checkpoint:every=2"], extra_callbacks=extra)
    end = interrupt or 2700
    with pytest.raises(charseq.RunFailed, match=rf"callback TurnsBad failed in state_dict: its state cannot be saved "
                                                rf"as JSON .*; saved m.npz at step {end:,} without that callback's "
                                                r"state; continue with: Run.resume\('m.npz'\)"):
        run.fit()
    saved = charseq.load(place / "m.npz")
    assert saved.training["step"] == end and "_TurnsBad" not in saved.training["callbacks"]


class ReplaceDirectory:
    """At step 5, the directory --out is in is removed and a file takes its name."""

    def __init__(self, folder):
        self.folder = folder

    @hookimpl
    def on_step_end(self, step):
        if step == 5:
            shutil.rmtree(self.folder)
            self.folder.write_text("not a directory any more")


def test_a_save_into_a_directory_that_became_a_file_is_rescued(place):
    (place / "od").mkdir()
    with pytest.raises(charseq.RunFailed, match=r"cannot write 'od/m.npz': [^;]+; saved the run to "
                                                r"m.rescued-step\d+.npz instead"):
        Run.start("digits:40", out="od/m.npz", epochs=2, batch_size=5, extra_callbacks=[ReplaceDirectory(place / "od")]
                  ).fit()
    (rescued,) = place.glob("m.rescued-step*.npz")
    assert charseq.load(rescued).training["epoch"] == 2


def test_a_template_directory_that_is_a_file_is_one_line_and_the_run_is_saved(place):
    (place / "1").write_text("a file where a directory would go")
    result = run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", "m.npz", "--callback",
                     "checkpoint:path={epoch}/x.npz", "-q", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "internal error" not in result.stderr
    assert "cannot write '1/x.npz'" in result.stderr and "saved the run to m.npz" in result.stderr
    assert (place / "1").read_text().startswith("a file")


def test_the_cache_refuses_a_text_edited_while_it_is_encoded(place, monkeypatch):
    import charseq.data.text as textfiles

    real = textfiles._content_key

    def edit_after_hashing(files, encoding, directory):
        key = real(files, encoding, directory)
        files[0].write_text("z" * files[0].stat().st_size)  # the same size, other content
        return key

    (place / "fresh.txt").write_text("a text no other test has encoded: " + "x" * 5000)
    monkeypatch.setattr(textfiles, "_content_key", edit_after_hashing)
    with pytest.raises(charseq.UsageError, match="the text changed while charseq was reading it"):
        charseq.get_corpus("text:fresh.txt")
    monkeypatch.setattr(textfiles, "_content_key", real)
    corpus = charseq.get_corpus("text:fresh.txt")  # the file now holds z's, and the cache says so
    assert corpus.vocab.decode(corpus.ids[:3]) == "zzz"


def test_a_progress_bar_on_a_closed_pipe_does_not_end_training(place):
    command = (f"{sys.executable} -m charseq train --corpus digits --epochs 60 --out m.npz --threads 1 --progress "
               "2>&1 >/dev/null | head -c 10 >/dev/null; echo \"status ${PIPESTATUS[0]}\"")
    result = subprocess.run(["bash", "-c", command], cwd=place, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.stdout == "status 0\n", result.stdout + result.stderr
    assert charseq.load(place / "m.npz").training["epoch"] == 60


def test_generate_with_stdout_closed_is_one_line(place, alphabet_checkpoint):
    result = subprocess.run(f"{sys.executable} -m charseq generate {alphabet_checkpoint} >&-", shell=True, cwd=place,
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == \
        "Error: standard output is closed; there is nowhere to print the text\n"


def test_a_crafted_early_stopping_state_is_refused_before_training(tmp_path):
    from conftest import resign

    out = tmp_path / "m.npz"
    run_cli("train", "--corpus", "digits", "--epochs", 3, "--patience", 5, "--out", out, "-q", "--sample-length", 0)
    resign(out, lambda m: m["training"]["callbacks"]["early-stopping"].update(best_metrics={"loss": "x", "epoch": [1]}))
    result = run_cli("train", "--resume", out, "--corpus", "digits", "--out", out, "--epochs", 6, ok=False)
    assert result.exit_code == 2 and "early-stopping's saved state is not valid" in result.stderr


def test_a_cut_short_last_metrics_line_is_left_out_of_a_plot(place):
    from charseq.cli.plot import read_metrics

    path = place / "m.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(charseq.UsageError, match="line 2 is not JSON"):
        read_metrics(path)


def test_output_errors_on_stdout_and_stderr_are_never_internal(place, alphabet_checkpoint):
    full = subprocess.run(f"{sys.executable} -m charseq train --corpus digits --epochs 3 --out m.npz > /dev/full",
                          shell=True, cwd=place, env=_env(), capture_output=True, text=True, timeout=120)
    assert full.returncode == 0 and charseq.load(place / "m.npz").training["epoch"] == 3, full.stderr
    gen = subprocess.run(f"{sys.executable} -m charseq generate {alphabet_checkpoint} > /dev/full", shell=True,
                         cwd=place, env=_env(), capture_output=True, text=True, timeout=120)
    assert gen.returncode == 1 and "cannot write the text to standard output" in gen.stderr
    closed = subprocess.run(f"{sys.executable} -m charseq train --corpus digits --epochs 3 --out n.npz --progress 2>&-",
                            shell=True, cwd=place, env=_env(), capture_output=True, text=True, timeout=120)
    assert closed.returncode == 0 and charseq.load(place / "n.npz").training["epoch"] == 3


def test_plot_never_writes_over_charseqs_data_or_a_device(place):
    pytest.importorskip("matplotlib")
    run_cli("train", "--corpus", "digits", "--epochs", 2, "--metrics", "m.jsonl", "--out", "m.npz", "-q")
    os.symlink("m.npz", place / "pic.png")
    for target, words in (("m.jsonl", "holds charseq's data"), ("pic.png", "holds charseq's data"),
                          ("/dev/full", "is a device")):
        result = run_cli("plot", "m.jsonl", "-o", target, ok=False)
        assert result.exit_code == 2 and words in result.stderr, target
    assert charseq.load(place / "m.npz").training["epoch"] == 2


def test_a_shared_temporary_cache_of_another_user_is_not_used(place, monkeypatch):
    import charseq.data.text as textfiles

    monkeypatch.delenv("CHARSEQ_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-cache-here")
    monkeypatch.setattr("tempfile.tempdir", str(place))
    planted = place / f"charseq-cache-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)  # anyone may write it: what another user's directory would allow
    with pytest.raises(charseq.UsageError, match="no usable cache directory"):
        textfiles.cache_dir()
