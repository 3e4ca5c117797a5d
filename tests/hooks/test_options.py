"""Option strings, NAME:key=value,..., as a user types them after --sampler, --callback and
--model: quoting, repeated keys, bare values, unknown options, types, and the listings that
show each one's options."""

from __future__ import annotations

import json

import pytest

from conftest import install_fake_distribution, run_cli

RECORDER = '''
from __future__ import annotations

from typing import TYPE_CHECKING

from charseq import hookimpl

if TYPE_CHECKING:
    from somewhere_else import Thing  # resolves for type checkers only


class Record:
    """Prints the options it was built with.

    path: where a record would go
    scale: a factor
    """

    def __init__(self, path=None, tag: str = "x", scale: float = 1, thing: Thing | None = None):
        print("record", {"path": path, "tag": tag, "scale": scale})

    @hookimpl
    def on_train_begin(self, trainer):
        pass


class Anything:
    """Takes any option."""

    def __init__(self, **options):
        print("anything", options)


@hookimpl
def register_callbacks(register):
    register("record", Record)
    register("anything", Anything)
'''


@pytest.fixture
def recorder(plugin_site):
    install_fake_distribution(plugin_site, "throwaway-env", RECORDER, "[charseq]\nrecord = throwaway_env\n")


def _train(tmp_path, *callbacks: str, ok: bool = True):
    args = ["train", "--corpus", "digits:20", "--epochs", 1, "--out", tmp_path / "m.npz", "-q", "--sample-length", 0,
            "--force"]
    for spec in callbacks:
        args += ["--callback", spec]
    return run_cli(*args, ok=ok)


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr
    return result.stderr


def test_a_quoted_value_holds_commas_and_spaces_and_loses_its_quotes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _train(tmp_path, 'metrics:path="a,b.jsonl"')
    _train(tmp_path, "metrics:path=' c d .jsonl'")
    _train(tmp_path, 'metrics:path=runs-"e,f".jsonl')  # quoted in the middle
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"a,b.jsonl", " c d .jsonl", "runs-e,f.jsonl"} <= set(names)
    assert not any('"' in name or "'" in name for name in names)


def test_quoting_errors_are_one_line(alphabet_checkpoint):
    unclosed = run_cli("generate", alphabet_checkpoint, "--sampler", 'top-k:k="3', ok=False)
    assert "the quote \" in options 'k=\"3' is not closed" in _one_line_error(unclosed)
    twice = run_cli("generate", alphabet_checkpoint, "--sampler", "top-k:k=2,k=3", ok=False)
    assert "option 'k' is given twice" in _one_line_error(twice)
    spelled_twice = run_cli("train", "--corpus", "alphabet", "--callback", "early-stopping:min-delta=1,min_delta=2",
                            ok=False)
    assert "option 'min_delta' is given twice" in _one_line_error(spelled_twice)


@pytest.mark.parametrize("option,spec,words", [
    ("--sampler", "top-k:20", "malformed option '20': expected key=value; did you mean top-k:k=20?"),
    ("--sampler", "top-p:0.9", "did you mean top-p:p=0.9?"),
    ("--sampler", "temperature:0.5", "did you mean temperature:temperature=0.5?"),
    ("--sampler", "argmax:3", "sampler 'argmax' takes no options"),
    ("--sampler", "top-k:k", "give k a value, such as top-k:k=40"),
    ("--model", "lstm:2", "did you mean lstm:layers=2?"),
    ("--callback", "metrics:log.jsonl", "did you mean metrics:path=log.jsonl?"),
    ("--callback", "early-stopping:3", "the options of callback 'early-stopping' are monitor, patience, min_delta, "
                                       "mode, baseline, restore_best_weights, start_from_epoch"),
])
def test_a_bare_value_says_what_was_meant(alphabet_checkpoint, tmp_path, monkeypatch, option, spec, words):
    monkeypatch.chdir(tmp_path)  # nothing is written, but were it trained, not into the checkout
    command = ["generate", alphabet_checkpoint] if option == "--sampler" else ["train", "--corpus", "alphabet"]
    assert words in _one_line_error(run_cli(*command, option, spec, ok=False))


@pytest.mark.parametrize("option,spec,words", [
    ("--sampler", "top-p:q=0.5", "sampler 'top-p' has no option 'q'; its options are p, temperature"),
    ("--model", "gru:layer=2", "model 'gru' has no option 'layer'; its options are layers"),
    ("--callback", "checkpoint:evry=2", "callback 'checkpoint' has no option 'evry'; its options are path, every, "
                                        "monitor, save_best_only, mode, keep_last"),
])
def test_an_unknown_option_lists_the_valid_ones(alphabet_checkpoint, tmp_path, monkeypatch, option, spec, words):
    monkeypatch.chdir(tmp_path)
    command = ["generate", alphabet_checkpoint] if option == "--sampler" else ["train", "--corpus", "alphabet"]
    assert words in _one_line_error(run_cli(*command, option, spec, ok=False))


def test_text_stays_text_unless_the_type_says_otherwise(recorder, tmp_path):
    """An untyped option and a str one keep what was typed; a float option whose default is 1
    takes 1.5, although another annotation does not resolve (once, every annotation was lost
    then, and `scale` was converted by its default's type, int)."""
    result = _train(tmp_path, "record:path=2024_01,tag=true,scale=1.5")
    assert "record {'path': '2024_01', 'tag': 'true', 'scale': 1.5}" in result.stdout
    result = _train(tmp_path, "record:path=true,tag=2024_01")
    assert "record {'path': 'true', 'tag': '2024_01', 'scale': 1.0}" in result.stdout
    for value in ("2024_01", "١٢"):  # Python's float() reads both; an option must not
        refused = _train(tmp_path, f"record:scale={value}", ok=False)
        assert f"scale must be a number, got '{value}'" in _one_line_error(refused)
    anything = _train(tmp_path, "anything:path=2024_01,flag=true")
    assert "anything {'path': '2024_01', 'flag': 'true'}" in anything.stdout


def test_listings_show_each_ones_options_defaults_and_help(recorder):
    samplers = run_cli("samplers").output.splitlines()
    top_k = samplers.index(next(line for line in samplers if line.startswith("top-k ")))
    assert samplers[top_k + 1].split() == ["k=40", "how", "many", "of", "the", "most", "likely", "symbols", "to",
                                           "sample", "among"]
    assert samplers[top_k + 2].split()[0] == "temperature=1.0"
    callbacks = run_cli("callbacks").output
    assert "    path (required)  the file to write (JSON lines)" in callbacks
    assert "  restore_best_weights=false  end with the weights of the best epoch" in callbacks
    assert "  path=none   where a record would go" in callbacks  # a plugin's, from its docstring
    assert "  tag=x\n" in callbacks  # no help line: none shown
    assert "  ...  any other key=value" in callbacks  # a factory taking **options
    assert "      layers=1  stacked layers, each of --hidden-size units" in run_cli("models").output
    assert "encoding=utf-8" in run_cli("corpora").output

    listed = {item["name"]: item for item in json.loads(run_cli("callbacks", "--json").output)}
    assert listed["metrics"]["options"] == [{"name": "path", "default": None, "required": True,
                                             "help": "the file to write (JSON lines)"}]
    assert {"name": "patience", "default": 0, "required": False,
            "help": "epochs without improvement before stopping (0 and 1: the first such epoch)"} \
        in listed["early-stopping"]["options"]
    models = {item["name"]: item for item in json.loads(run_cli("models", "--json").output)}
    assert [option["name"] for option in models["lstm"]["options"]] == ["layers"]  # not charseq's own arguments
    assert all("options" in item for item in json.loads(run_cli("samplers", "--json").output))


DECLARED_SAMPLER = '''
from typing import Annotated

import numpy as np
from charseq import Option, hookimpl


class Nth:
    """The n-th most likely symbol."""

    def __init__(self, n: Annotated[int, Option("which symbol: 1 is the most likely", min=1, max=3)] = 1,
                 order: Annotated[str, Option("most or least likely first", choices=("most", "least"))] = "most"):
        self.n, self.order = n, order

    def __call__(self, logits, rng):
        ranked = np.argsort(np.asarray(logits), axis=1)
        return ranked[:, -self.n] if self.order == "most" else ranked[:, self.n - 1]


@hookimpl
def register_samplers(register):
    register("nth", Nth)
'''


def test_an_option_declared_in_its_annotation_has_its_help_bounds_and_type_in_one_place(plugin_site,
                                                                                          alphabet_checkpoint):
    """charseq.Option, as llm's Options: the listing shows its help, the value is converted
    to its type and checked against its bounds and choices before the factory runs."""

    install_fake_distribution(plugin_site, "throwaway-nth", DECLARED_SAMPLER, "[charseq]\nnth = throwaway_nth\n")
    listing = run_cli("samplers").output
    assert "n=1" in listing and "which symbol: 1 is the most likely" in listing
    assert "most or least likely first" in listing
    first = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--length", 5, "--sampler", "nth:n=1").stdout
    assert first == run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--length", 5, "--sampler",
                            "argmax").stdout
    for spec, words in (("nth:n=0", "n must be at least 1, got 0"), ("nth:n=4", "n must be at most 3, got 4"),
                        ("nth:n=two", "n"), ("nth:order=middle", "order must be one of 'most', 'least'")):
        refused = run_cli("generate", alphabet_checkpoint, "--sampler", spec, ok=False)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and words in refused.stderr, refused.stderr
