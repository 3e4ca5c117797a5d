"""charseq's type information, seen from a plugin: the package ships ``py.typed``, so a
type checker reads its annotations; a typed plugin that keeps the contract passes mypy
against the installed charseq, and wrong uses of the public API are reported."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import charseq

PACKAGE = Path(charseq.__file__).resolve().parent

# A plugin as its author would type it: a corpus, a model (docs/plugins.md's bigram) and
# the register hooks, plus a use of charseq's own corpora and models. Under --strict.
GOOD = '''
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import numpy as np

import charseq


class Lookup:
    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.table[ids])  # (numpy types an index's result as Any)

    def feed(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.table[x[:, -1]])


class Bigram:
    name = "bigram"
    input_weights = ("L",)

    def __init__(self, vocab_size: int, hidden_size: int, seed: int | None = 0, dtype: Any = np.float32) -> None:
        self.vocab_size, self.hidden_size, self.dtype = vocab_size, hidden_size, np.dtype(dtype)
        self.flat, self.params = self.gradient_buffer()

    def options(self) -> dict[str, Any]:
        return {}

    def gradient_buffer(self) -> tuple[np.ndarray, charseq.Parameters]:
        flat = np.zeros(self.vocab_size**2, self.dtype)
        return flat, charseq.Parameters({"L": flat.reshape(self.vocab_size, self.vocab_size)})

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, 0)

    def loss(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        return 0.0, np.zeros(self.state_shape(len(x)), self.dtype)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None,
                       out: MutableMapping[str, np.ndarray] | None = None, dropout: float = 0.0,
                       rng: np.random.Generator | None = None
                       ) -> tuple[float, MutableMapping[str, np.ndarray], np.ndarray]:
        grads = out if out is not None else self.gradient_buffer()[1]
        loss, after = self.loss(x, y, state)
        return loss, grads, after

    def stepper(self, batch_size: int) -> Lookup:
        return Lookup(self.params["L"].copy())


def bigram(vocab_size: int, hidden_size: int, seed: int | None = 0, dtype: Any = np.float32) -> charseq.Model:
    return Bigram(vocab_size, hidden_size, seed, dtype)


def shout(arg: str | None = None) -> charseq.Corpus:
    return charseq.Corpus.from_text("shout", (arg or "hello, world").upper(), defaults={"hidden_size": 32})


@charseq.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register("bigram", bigram)


@charseq.hookimpl
def register_corpora(register: Callable[..., None]) -> None:
    register("shout", shout)


def first_loss() -> float:
    corpus = charseq.get_corpus("alphabet")
    model = charseq.get_model("gru:layers=2", len(corpus.vocab), 16, seed=1)
    loss, state = model.loss(corpus.ids[None, :-1], corpus.ids[None, 1:])
    return loss + float(state.sum())
'''

# Each line marked `# wrong` must be reported, and nothing else.
BAD = '''
import charseq


class Half:
    name = "half"


charseq.Corpus.from_text(1, 2)  # wrong
model: charseq.Model = Half()  # wrong
charseq.get_model("rnn", "65", 16)  # wrong
size: str = charseq.get_corpus("alphabet").vocab.symbols  # wrong
'''


def _found_by_mypy_as_installed() -> bool:
    """Whether charseq is an ordinary installed package (a wheel's, or `pip install .`'s) in
    this interpreter's site-packages, where mypy looks and needs py.typed. An editable
    install is found through an import hook that mypy does not follow."""
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    return any(PACKAGE.parent == Path(directory).resolve() for directory in sites)


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("mypy")
    work = tmp_path_factory.mktemp("typing")
    (work / "typed_plugin.py").write_text(textwrap.dedent(GOOD), encoding="utf-8")
    (work / "wrong_uses.py").write_text(textwrap.dedent(BAD), encoding="utf-8")
    (work / "mypy.ini").write_text("[mypy]\n", encoding="utf-8")  # not the checkout's own settings
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    if not _found_by_mypy_as_installed():  # a source checkout: mypy reads the package where it is
        env["MYPYPATH"] = str(PACKAGE.parent)
    outputs = {}
    for name, flags in (("typed_plugin.py", ["--strict"]), ("wrong_uses.py", [])):
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(work / ".mypy_cache"),
             "--python-version", "3.10", "--follow-imports", "silent", "--no-error-summary", *flags, name],
            cwd=work, env=env, capture_output=True, text=True, timeout=600)
        outputs[name] = done.stdout + done.stderr
    return outputs


def test_the_package_ships_py_typed():
    assert (PACKAGE / "py.typed").is_file()


def test_a_typed_plugin_type_checks_against_charseq(mypy_output):
    assert mypy_output["typed_plugin.py"].strip() == ""


def test_wrong_uses_of_the_public_api_are_reported(mypy_output):
    output = mypy_output["wrong_uses.py"]
    wrong = [number for number, line in enumerate(textwrap.dedent(BAD).splitlines(), start=1) if "# wrong" in line]
    reported = sorted({int(line.split(":")[1]) for line in output.splitlines() if ": error:" in line})
    assert reported == wrong, output
    assert "py.typed" not in output and "import-not-found" not in output and "import-untyped" not in output, output
