"""docs/architecture.md stays true: every subpackage and top-level module it names exists,
and every one in the tree is named in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
pytestmark = pytest.mark.skipif(not PAGE.is_file(), reason="needs the source checkout")


def test_every_subpackage_named_exists_and_every_subpackage_is_named():
    text = PAGE.read_text()
    named = set(re.findall(r"`charseq/(\w+)/`", text))
    in_tree = {p.parent.name for p in (ROOT / "charseq").glob("*/__init__.py")}
    assert named == in_tree


def test_every_module_named_exists():
    """`cli/train.py`, `files.py`: a module the page names is in the tree (in its package's
    folder, or at the top)."""
    text = PAGE.read_text()
    missing = []
    for folder, name in re.findall(r"`(?:charseq/)?(?:(\w+)/)?(\w+)\.py`", text):
        candidates = [ROOT / "charseq" / folder / f"{name}.py"] if folder else \
            [ROOT / "charseq" / f"{name}.py", *(ROOT / "charseq").glob(f"*/{name}.py"), ROOT / "plugins" / f"{name}.py"]
        if folder == "plugins":
            candidates = [ROOT / "plugins" / f"{name}.py"]
        if not any(c.is_file() for c in candidates):
            missing.append(f"{folder}/{name}.py" if folder else f"{name}.py")
    assert not missing
