"""The example third-party package in examples/, once installed (CI installs it), joins
charseq with no change to charseq: listed, and used by train and generate."""

import pytest

import charseq
from conftest import run_cli

pytest.importorskip("charseq_example", reason="pip install ./examples/charseq-example")


@pytest.fixture(autouse=True)
def installed_plugins(monkeypatch):
    monkeypatch.delenv("CHARSEQ_LOAD_PLUGINS")
    charseq.reload_plugins()
    yield
    charseq.reload_plugins()


def test_example_package_is_listed_and_used(tmp_path):
    assert "example (charseq-example 0.1.0)" in run_cli("plugins").output
    assert "vowels" in run_cli("corpora").output and "least-likely" in run_cli("samplers").output
    out = tmp_path / "v.npz"
    run_cli("train", "--corpus", "vowels", "--out", out, "-q", "--callback", f"loss-log:path={tmp_path / 'l.csv'}")
    assert (tmp_path / "l.csv").read_text().startswith("epoch,step,loss")
    assert run_cli("generate", out, "--prime", "io", "--length", 6, "--sampler", "argmax").output == "iouaeiou\n"
    assert run_cli("vocab", out).output.startswith("0\t'a'")
