"""Shared fixtures: a CLI runner, a trained alphabet model, and a throwaway installed plugin."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import tempfile
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from charseq import hookimpl
from charseq.cli import cli
from charseq.hooks.registry import get_registry

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


FAKE_PACKAGES = ("throwaway-vowels", "throwaway-greedy", "throwaway-broken", "throwaway-env", "throwaway-signals",
                 "charseq-vowels",
                 "charseq-upper", "charseq-bigram", "throwaway-models")


def pytest_configure(config):
    """Only the bundled plugins, unless a test asks for installed ones: whatever else the
    developer has installed must not change what the tests see."""
    os.environ["CHARSEQ_LOAD_PLUGINS"] = ""
    os.environ["CHARSEQ_CACHE"] = tempfile.mkdtemp(prefix="charseq-cache-")  # not the developer's cache
    os.environ["CHARSEQ_STATE"] = tempfile.mkdtemp(prefix="charseq-state-")  # nor the developer's key


def pytest_unconfigure(config):
    for name in ("CHARSEQ_CACHE", "CHARSEQ_STATE"):
        shutil.rmtree(os.environ.get(name, ""), ignore_errors=True)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run_cli(*args: str, ok: bool = True):
    """Invoke the CLI in-process; with ok=True, fail the test with its output unless it exits 0."""
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="charseq")
    if ok and result.exit_code != 0:
        raise AssertionError(f"charseq {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}")
    return result


@pytest.fixture(scope="session")
def alphabet_checkpoint(tmp_path_factory) -> Path:
    """`charseq train --corpus alphabet` with its defaults, once per test session."""
    out = tmp_path_factory.mktemp("alphabet") / "alphabet.npz"
    run_cli("train", "--corpus", "alphabet", "--out", out, "--quiet")
    return out


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "digits.npz"
    run_cli("train", "--corpus", "digits", "--out", out, "--quiet")
    return out


@pytest.fixture
def fresh_registry():
    """Plugins are loaded again before and after the test, so its changes do not leak."""
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


def _interrupt(trainer, signum) -> None:
    """What charseq's signal handler does to the trainer (not a callback's to do: hence the warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        trainer.interrupted = signum


class InterruptAt:
    """A callback that interrupts the run as a signal would: at step `step`, at the start,
    or as epoch `epoch` ends (hook "on_step_end", "on_train_begin" or "on_epoch_end")."""

    def __init__(self, step=None, hook="on_step_end", epoch=None, signum=signal.SIGINT):
        self.step, self.hook, self.epoch, self.signum = step, hook, epoch, signum

    @hookimpl
    def on_train_begin(self, trainer):
        if self.hook == "on_train_begin":
            _interrupt(trainer, self.signum)

    @hookimpl
    def on_step_end(self, trainer, step):
        if self.hook == "on_step_end" and step == self.step:
            _interrupt(trainer, self.signum)

    @hookimpl
    def on_epoch_end(self, trainer, epoch):
        if self.hook == "on_epoch_end" and epoch == self.epoch:
            _interrupt(trainer, self.signum)


def members_of(path: Path) -> dict:
    """Every member of a checkpoint, as arrays (read without pickle)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def resign(path: Path, change=None, arrays=None, raw_metadata: bytes | None = None) -> None:
    """Rewrite a checkpoint as a hostile user could: metadata changed by `change(metadata)`
    (or replaced by `raw_metadata`), arrays replaced, and the checksum made to match again."""
    import json

    import numpy as np

    from charseq.checkpoints.format import _digest

    members = members_of(path)
    members.pop("checksum", None)
    members.pop("seal", None)  # which only the key could make again
    metadata = members.pop("metadata").tobytes()
    if change is not None:
        decoded = json.loads(metadata)
        change(decoded)
        metadata = json.dumps(decoded).encode()
    if raw_metadata is not None:
        metadata = raw_metadata
    members.update(arrays or {})
    checksum = _digest(members, metadata).encode()
    with open(path, "wb") as f:
        np.savez(f, **members, metadata=np.frombuffer(metadata, dtype=np.uint8),
                 checksum=np.frombuffer(checksum, dtype=np.uint8))


def install_fake_distribution(site: Path, package: str, module_source: str, entry_points: str) -> None:
    """Lay out a module and its .dist-info as pip would, so importlib.metadata finds it."""
    module = package.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    dist_info = site / f"{module}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    selected = os.environ.get("CHARSEQ_LOAD_PLUGINS")
    if selected is not None:  # plugin_site's selection: the fake packages installed, and no name that is not
        os.environ["CHARSEQ_LOAD_PLUGINS"] = ",".join([name for name in selected.split(",") if name] + [package])


@pytest.fixture
def plugin_site(tmp_path, monkeypatch, fresh_registry):
    """A directory on sys.path to install fake plugin distributions into."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    # The fake packages the tests install (install_fake_distribution adds each), and nothing else
    # the developer may have installed. Only those installed: naming others would be warned about.
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "")
    importlib.invalidate_caches()
    yield site
    for name in [m for m in sys.modules if m.startswith(("throwaway_", "charseq_vowels", "charseq_upper", "charseq_bigram"))]:
        del sys.modules[name]
