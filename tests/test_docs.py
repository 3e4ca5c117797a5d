"""docs/plugins.md stays true: its hook reference matches the hook specifications, and its
worked example installs and works."""

import inspect
import re
from pathlib import Path

import pytest

from charseq import hookspecs
from conftest import install_fake_distribution, run_cli

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
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
