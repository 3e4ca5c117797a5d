"""docs/plugins.md stays true: its hook reference matches the hook specifications, and its
worked example installs and works."""

import inspect
import re
from pathlib import Path

import pytest

from charseq.hooks import specs as hookspecs
from conftest import install_fake_distribution, run_cli

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
pytestmark = pytest.mark.skipif(not GUIDE.is_file(), reason="needs the source checkout")


def _specs() -> dict[str, object]:
    plugin_hooks = {name: f for name, f in vars(hookspecs).items()
                    if callable(f) and hasattr(f, "charseq_spec")}
    callback_hooks = {name: f for name, f in vars(hookspecs.CallbackSpec).items() if hasattr(f, "charseq_spec")}
    return {**plugin_hooks, **callback_hooks}


def _documented() -> dict[str, tuple[str, str]]:
    """heading name -> (signature as written, the text under the heading)."""
    reference = GUIDE.read_text().split("## Hook reference", 1)[1]
    sections = re.split(r"^### `(\w+)\((.*?)\)`\n", reference, flags=re.M)
    return {sections[i]: (sections[i + 1], sections[i + 2]) for i in range(1, len(sections), 3)}


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_hook_is_documented_and_every_documented_hook_exists():
    assert set(_documented()) == set(_specs())


@pytest.mark.parametrize("name", sorted(_specs()))
def test_reference_matches_the_signature_and_docstring(name):
    spec = _specs()[name]
    signature, text = _documented()[name]
    arguments = [p for p in inspect.signature(spec).parameters if p != "self"]
    assert [a.strip() for a in signature.split(",") if a.strip()] == arguments
    assert _words(inspect.getdoc(spec)) in _words(text)


def test_worked_example_installs_and_works(plugin_site, tmp_path, monkeypatch):
    guide = GUIDE.read_text()
    source = re.findall(r"```python\n(.*?)```", guide, re.S)[0]
    entry_point = re.search(r"\[project\.entry-points\.charseq\]\n(.*?)\n", guide).group(1).replace('"', "")
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "charseq-upper")
    install_fake_distribution(plugin_site, "charseq-upper", source, f"[charseq]\n{entry_point}\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the cat sat on the mat. " * 200)
    assert "upper (charseq-upper 0.1)  corpus: upper; sampler: second-best; callback: stop-below; command: symbols" \
        in run_cli("plugins").output
    trained = run_cli("train", "--corpus", "upper:notes.txt", "--callback", "stop-below:loss=2.5", "--epochs", 50,
                      "--out", "notes.npz", "-q")
    assert "after 50 epochs" not in trained.output  # stop-below ended it early
    assert run_cli("symbols", "notes.npz").output == " .ACEHMNOST\n"
    second = run_cli("generate", "notes.npz", "--prime", "THE ", "--length", 10, "--sampler", "second-best").output
    assert second.startswith("THE ") and set(second.strip()) <= set(" .ACEHMNOST")


def _bigram_source() -> str:
    return next(block for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
                if "class Bigram" in block)


def test_the_guides_model_keeps_the_contract_and_its_gradient_is_right(plugin_site):
    """The bigram model of the guide, as installed: every gradient against central differences."""
    import numpy as np

    import charseq
    from charseq.models.base import check_model

    install_fake_distribution(plugin_site, "charseq-bigram", _bigram_source(), "[charseq]\nbigram = charseq_bigram\n")
    model = charseq.get_model("bigram", 5, 1, dtype="float64")
    check_model(model, "bigram")
    rng = np.random.default_rng(0)
    model.params["L"] = rng.normal(0, 1, (5, 5))
    x, y = rng.integers(0, 5, (3, 4)), rng.integers(0, 5, (3, 4))
    loss, grads, _ = model.loss_and_grads(x, y)
    assert loss == model.loss(x, y)[0]
    numerical = np.zeros((5, 5))
    for index in np.ndindex(5, 5):
        saved = model.params["L"][index]
        model.params["L"][index] = saved + 1e-6
        plus = model.loss(x, y)[0]
        model.params["L"][index] = saved - 1e-6
        numerical[index] = (plus - model.loss(x, y)[0]) / 2e-6
        model.params["L"][index] = saved
    assert np.linalg.norm(grads["L"] - numerical) / np.linalg.norm(numerical) < 1e-6


def test_the_guides_model_trains_resumes_samples_and_is_named_where_it_is_missing(plugin_site, tmp_path,
                                                                                   monkeypatch):
    install_fake_distribution(plugin_site, "charseq-bigram", _bigram_source(), "[charseq]\nbigram = charseq_bigram\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("abab abba baab " * 300)
    listing = run_cli("models").output  # names padded to the longest installed (transformer)
    assert re.search(r"^bigram +The next character from this one alone: a table of logits\.  \[bigram\]$", listing, re.M)
    settings = ["--seq-len", 16, "--batch-size", 8, "--lr", 0.1, "--schedule", "constant", "--input-lr-scale", 1,
                "--sample-length", 0, "-q"]
    run_cli("train", "--corpus", "text:notes.txt", "--model", "bigram", "--epochs", 2, "--out", "b.npz", *settings)
    run_cli("train", "--resume", "b.npz", "--epochs", 4, "-q", "--sample-length", 0)
    run_cli("train", "--corpus", "text:notes.txt", "--model", "bigram", "--epochs", 4, "--out", "whole.npz", *settings)
    import charseq

    resumed, whole = charseq.load("b.npz"), charseq.load("whole.npz")
    assert resumed.model.name == "bigram" and resumed.progress["epoch"] == 4
    assert (resumed.model.flat == whole.model.flat).all()  # exact resume, through the contract alone
    # a bigram of "abab abba baab": after "a" comes "b" or "a", never a space twice in a row
    assert whole.progress["loss"] < 1.0
    sample = run_cli("generate", "b.npz", "--prime", "ab", "--length", 30, "--seed", 1).output
    assert "  " not in sample and set(sample.strip()) <= set("ab ")
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "")
    charseq.reload_plugins()
    for command in (["generate", "b.npz"], ["eval", "b.npz", "--corpus", "text:notes.txt"],
                    ["train", "--resume", "b.npz", "--epochs", 6]):
        result = run_cli(*command, ok=False)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "holds a 'bigram' model, which no installed plugin provides; install the package 'charseq-bigram'" \
            in result.stderr


def test_the_command_toolkit_example_is_a_command_with_trains_options(plugin_site, tmp_path, monkeypatch):
    """The guide's `charseq finetune`, built on charseq.cli as the bundled commands are."""
    source = next(block for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
                  if "def finetune" in block)
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "throwaway-finetune")
    install_fake_distribution(plugin_site, "throwaway-finetune", source, "[charseq]\nfinetune = throwaway_finetune\n")
    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", "a.npz", "-q")
    shown = " ".join(run_cli("finetune", "--help").output.split())
    assert "--hidden-size" in shown and "--threads" in shown and "--lr" in shown
    finetuned = run_cli("finetune", "a.npz", "--epochs", 4, "--threads", 1)
    assert "a.npz after 4 epochs" in finetuned.output
    refused = run_cli("finetune", "a.npz", "--hidden-size", 8, ok=False)
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
