"""The example plugin, installed, used through charseq's CLI."""

import csv

import pytest
from click.testing import CliRunner

from charseq.cli import cli
import charseq


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch):
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "charseq-example")
    charseq.reload_plugins()
    yield
    charseq.reload_plugins()


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="charseq")
    assert result.exit_code == 0, result.output
    return result.output


def test_listed_by_charseq_plugins():
    assert "example (charseq-example 0.1.0)  corpus: vowels; sampler: least-likely; callback: loss-log; command: vocab" \
        in run("plugins")


def test_train_with_its_corpus_and_callback_then_generate_with_its_sampler(tmp_path):
    out, log = tmp_path / "v.npz", tmp_path / "loss.csv"
    run("train", "--corpus", "vowels", "--out", out, "--callback", f"loss-log:path={log}", "-q")
    rows = list(csv.DictReader(log.open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 41))
    assert float(rows[-1]["loss"]) < 0.05 < float(rows[0]["loss"])
    assert run("generate", out, "--prime", "ae", "--length", 8, "--sampler", "argmax") == "aeiouaeiou\n"
    least = run("generate", out, "--prime", "ae", "--length", 8, "--sampler", "least-likely")
    assert least.startswith("ae") and least != "aeiouaeiou\n"


def test_its_vocab_command(tmp_path):
    out = tmp_path / "v.npz"
    run("train", "--corpus", "vowels", "--out", out, "--epochs", 1, "-q")
    assert run("vocab", out).splitlines() == ["0\t'a'", "1\t'e'", "2\t'i'", "3\t'o'", "4\t'u'"]
