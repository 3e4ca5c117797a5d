"""The Python examples of the README and the documentation's pages run as written."""

import re

import pytest

from conftest import install_fake_distribution, run_cli
from pages import INDEX, README, blocks, example_pages, python_block as _python_block

pytestmark = pytest.mark.skipif(not (README.is_file() and INDEX.is_file()), reason="needs the source checkout")


def test_api_example_generates_the_alphabet(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_python_block("charseq.Run.start("), "README api example", "exec"), namespace)
    assert capsys.readouterr().out == "['GHIJKLMNOPQRSTUVWXYZ']\n"
    assert namespace["result"].status == "finished" and namespace["resumed"].epoch == 60
    assert len((tmp_path / "alphabet.jsonl").read_text().splitlines()) == 60  # the metrics log came back


def test_api_example_runs_twice_in_a_row(tmp_path, monkeypatch, capsys):
    """Run again in the same folder, the example continues its own run instead of failing."""
    monkeypatch.chdir(tmp_path)
    block = compile(_python_block("charseq.Run.start("), "README api example", "exec")
    exec(block, {})
    before = (tmp_path / "alphabet.npz").read_bytes()
    capsys.readouterr()
    again = {}
    exec(block, again)
    assert capsys.readouterr().out == "['GHIJKLMNOPQRSTUVWXYZ']\n"
    assert again["result"].status == "complete" and again["resumed"].epoch == 60
    assert len((tmp_path / "alphabet.jsonl").read_text().splitlines()) == 60
    assert (tmp_path / "alphabet.npz").read_bytes() == before  # a complete run is not trained or saved again


def test_api_examples_use_only_public_names():
    """No example imports charseq's modules: the API is what `import charseq` gives."""
    import charseq

    for block in blocks("python"):
        if "register_corpora" in block or "import charseq" not in block:
            continue  # the plugin example, which imports what plugins use; clients of serve and export
        assert "from charseq" not in block and "import charseq." not in block, block
        for name in re.findall(r"charseq\.(\w+)", block):
            assert name in charseq.__all__, name


def test_notebook_generation_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "novel.txt").write_text("The cat sat.\n\nThe dog ran far.\n\n" * 400)
    run_cli("train", "--corpus", "text:novel.txt", "--epochs", 3, "--hidden-size", 32, "-q", "--out", "novel.npz")
    namespace = {}
    exec(compile(_python_block("stream("), "README notebook example", "exec"), namespace)
    assert len(namespace["texts"]) == 3 and all("\n\n" not in text for text in namespace["texts"])
    assert len(capsys.readouterr().out) == 200


def test_plugin_example_installs_and_works_through_the_cli(plugin_site, tmp_path, monkeypatch):
    source = _python_block("register_corpora")
    pages = "".join(page.read_text() for page in example_pages())
    entry_point = re.search(r"\[project\.entry-points\.charseq\]\n(.*?)\n", pages).group(1)
    # pyproject.toml quotes the value; the installed entry_points.txt does not.
    install_fake_distribution(plugin_site, "charseq-vowels", source, f"[charseq]\n{entry_point.replace(chr(34), '')}\n")
    monkeypatch.chdir(tmp_path)
    assert "vowels (charseq-vowels 0.1)  corpus: vowels; sampler: least; callback: print-loss" in run_cli(
        "plugins").output
    trained = run_cli("train", "--corpus", "vowels", "--epochs", 30, "--callback", "print-loss:every=2", "-q")
    assert re.search(r"^2 \d", trained.stdout, re.M)  # the callback printed at epoch 2
    assert (tmp_path / "vowels.npz").is_file()
    least = run_cli("generate", "vowels.npz", "--prime", "a", "--length", 10, "--sampler", "least").output
    argmax = run_cli("generate", "vowels.npz", "--prime", "a", "--length", 10, "--sampler", "argmax").output
    assert argmax == "aeiouaeioua\n" and least != argmax
