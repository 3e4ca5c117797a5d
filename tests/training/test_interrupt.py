"""Interrupting training never loses work: Ctrl-C and SIGTERM save a checkpoint that resumes
exactly, a second Ctrl-C aborts without touching the last checkpoint, and kill -9 at any
moment leaves a whole checkpoint behind. These run the installed `charseq` in processes
of their own, as a user would, in directories away from the source tree."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import charseq
from conftest import install_fake_distribution, run_cli

TRAIN = ["--hidden-size", "48", "--seq-len", "16", "--batch-size", "8", "--epochs", "3", "--threads", "1",
         "--no-progress", "--sample-length", "0"]


@pytest.fixture
def text(tmp_path) -> Path:
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "far", "away"]
    path = tmp_path / "words.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(60_000)))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "CHARSEQ_LOAD_PLUGINS": ""}


def _charseq(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "charseq", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charseq", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def _params(path: Path) -> dict[str, np.ndarray]:
    return charseq.load(path).model.params


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_saves_a_checkpoint_that_resumes_exactly(text, tmp_path, signum, code):
    whole = _finish("train", "--corpus", f"text:{text}", *TRAIN, "--out", "whole.npz", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    run = _charseq("train", "--corpus", f"text:{text}", *TRAIN, "--out", "cut.npz", cwd=tmp_path)
    line = run.stdout.readline()
    while line and not line.startswith("epoch 1/3"):  # the signal lands in epoch 2
        line = run.stdout.readline()
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr
    assert stderr.startswith("interrupted at step ") and stderr.count("\n") == 1
    assert "saved cut.npz; continue with: charseq train --resume cut.npz" in stderr
    assert "epoch 3/3" not in stdout

    resumed = _finish("train", "--resume", "cut.npz", "--threads", "1", "--no-progress", "--sample-length", "0",
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from cut.npz at step" in resumed.stdout
    a, b = _params(tmp_path / "whole.npz"), _params(tmp_path / "cut.npz")
    assert set(a) == set(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


DOUBLE_CTRL_C = """
import os, signal
from charseq import hookimpl

class DoubleCtrlC:
    '''Presses Ctrl-C twice at step 5, as an impatient user would.'''
    @hookimpl
    def on_step_end(self, trainer, step, loss):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

@hookimpl
def register_callbacks(register):
    register("double-ctrl-c", DoubleCtrlC)
"""


def test_a_second_ctrl_c_aborts_at_once_and_leaves_the_checkpoint_alone(plugin_site, tmp_path, alphabet_checkpoint):
    install_fake_distribution(plugin_site, "throwaway-signals", DOUBLE_CTRL_C,
                              "[charseq]\nsignals = throwaway_signals\n")
    (tmp_path / "run").mkdir()
    out = tmp_path / "run" / "m.npz"
    out.write_bytes(alphabet_checkpoint.read_bytes())
    result = run_cli("train", "--corpus", "alphabet", "--out", out, "--callback", "double-ctrl-c", "--force", ok=False)
    assert result.exit_code == 130
    assert result.stderr == f"aborted at step 5; {out} keeps its last whole checkpoint\n"
    assert result.stdout.startswith("training on alphabet")
    assert out.read_bytes() == alphabet_checkpoint.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["m.npz"]  # and no temporary file beside it


@pytest.mark.slow
def test_kill_9_at_random_moments_always_leaves_a_whole_checkpoint(tmp_path):
    """Checkpoint-heavy training (a save every epoch, hundreds a second), killed 25 times at
    random moments once it is saving; each run resumes from what the last one left."""
    out = tmp_path / "alphabet.npz"
    rng = random.Random(1)
    steps, kills = [], 0
    for attempt in range(25):
        before = out.stat().st_mtime_ns if out.exists() else None
        args = ["--resume", out] if before is not None else ["--corpus", "alphabet"]
        run = _charseq("train", *args, "--epochs", "100000", "--checkpoint-every", "1", "--out", out,
                       "--threads", "1", "--quiet", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_mtime_ns == before):
            time.sleep(0.002)  # until this run has saved once: it is saving all the time from then on
        time.sleep(rng.random() * 0.05)
        run.kill()
        run.communicate()
        assert run.returncode == -signal.SIGKILL, f"attempt {attempt} ended on its own"
        kills += 1
        saved = charseq.load(out)  # whole, valid, checksum and all
        assert saved.resumable
        steps.append(saved.training["step"])
    assert kills == 25
    assert all(a < b for a, b in zip(steps, steps[1:]))  # each run carried on from the last
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "alphabet.npz"]
    assert all(name.startswith(".alphabet.npz.") and name.endswith(".tmp") for name in leftovers)


FRAGILE_CALLBACK = """
from charseq import hookimpl

class Fragile:
    '''Breaks at step 40, as a buggy logger might.'''
    @hookimpl
    def on_step_end(self, trainer, step, loss):
        if step == 40:
            raise ValueError("the logger lost its connection")

@hookimpl
def register_callbacks(register):
    register("fragile", Fragile)
"""


def test_a_plugin_callback_that_raises_costs_no_work(plugin_site, tmp_path):
    install_fake_distribution(plugin_site, "throwaway-signals", FRAGILE_CALLBACK,
                              "[charseq]\nfragile = throwaway_signals\n")
    out = tmp_path / "m.npz"
    result = run_cli("train", "--corpus", "alphabet", "--out", out, "--callback", "fragile", "--quiet", ok=False)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: callback 'fragile' of plugin 'fragile' (package 'throwaway-signals') failed in on_step_end: "
        f"ValueError: the logger lost its connection; saved {out} at step 40; continue with: charseq train --resume "
        f"{out} --drop-callback fragile\n")
    saved = charseq.load(out)
    assert saved.training["step"] == 40
    resumed = run_cli("train", "--resume", out, "--drop-callback", "fragile", "--quiet", "--sample-length", "0")
    assert charseq.load(out).training["step"] == 2700 and resumed.exit_code == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_the_last_save_finishes_the_run_and_says_a_stop_was_asked(tmp_path, monkeypatch, signum):
    """The run had ended: the save goes on and the run is finished, nothing to interrupt; but
    its result says a stop was asked, so that whoever runs one run after another (a sweep)
    stops instead of starting the next."""
    from charseq.checkpoints import format as checkpoint_format

    save = checkpoint_format.save

    def signal_while_saving(path, checkpoint):
        os.kill(os.getpid(), signum)  # the moment the temporary file would appear
        return save(path, checkpoint)

    monkeypatch.setattr(checkpoint_format, "save", signal_while_saving)
    result = charseq.Run.start("alphabet", out=tmp_path / "m.npz", epochs=1, hidden_size=8).fit()
    assert result.status == "finished" and result.exit_code == 0 and result.saved == tmp_path / "m.npz"
    assert result.stop_asked == signum
    assert charseq.load(tmp_path / "m.npz").training["step"] == result.step
    monkeypatch.setattr(checkpoint_format, "save", save)
    calm = charseq.Run.start("alphabet", out=tmp_path / "calm.npz", epochs=1, hidden_size=8).fit()
    assert calm.status == "finished" and calm.stop_asked is None


def test_train_finishes_with_0_when_the_signal_comes_during_its_last_save(tmp_path, monkeypatch):
    from charseq.checkpoints import format as checkpoint_format

    save = checkpoint_format.save

    def signal_while_saving(path, checkpoint):
        os.kill(os.getpid(), signal.SIGTERM)
        return save(path, checkpoint)

    monkeypatch.setattr(checkpoint_format, "save", signal_while_saving)
    result = run_cli("train", "--corpus", "alphabet", "--out", tmp_path / "m.npz", "--epochs", "1", "--quiet",
                     "--sample-length", "0")
    assert result.exit_code == 0 and charseq.load(tmp_path / "m.npz").training["epoch"] == 1


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT], ids=["nohup", "background-job"])
def test_a_signal_ignored_when_charseq_starts_stays_ignored(text, tmp_path, signum):
    """`nohup charseq train ... &` then kill -HUP: charseq replaced nohup's ignore and stopped
    (129); a script's background job ignores SIGINT, and a Ctrl-C meant for the script
    stopped the run. Whoever started charseq chose to ignore it: the run trains on."""
    run = subprocess.Popen([sys.executable, "-m", "charseq", "train", "--corpus", f"text:{text}", *TRAIN, "--out",
                            "m.npz"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN))
    line = run.stdout.readline()
    while line and not line.startswith("epoch 1/3"):
        line = run.stdout.readline()
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert "epoch 3/3" in stdout and "interrupted" not in stderr
    assert charseq.load(tmp_path / "m.npz").training["epoch"] == 3
