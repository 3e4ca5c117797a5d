"""The documentation as the tests that run its examples read it: the README, and the site's
pages in the order of its contents (docs/index.md's toctrees, depth first)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
INDEX = DOCS / "index.md"
# The plugin guide's examples need its plugin installed: tests/contracts/test_plugin_guide.py
# installs it and runs them.
PLUGIN_GUIDE = DOCS / "plugins.md"


def toctree(page: Path) -> list[Path]:
    """The pages a page's toctrees list, in order."""
    entries = []
    for block in re.findall(r"^```\{toctree\}\n(.*?)^```", page.read_text(), re.S | re.M):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                entries.append((page.parent / f"{line}.md").resolve())
    return entries


def site_pages() -> list[Path]:
    """Every page of the site, in the order of its contents."""
    ordered: list[Path] = []

    def visit(page: Path) -> None:
        ordered.append(page)
        for entry in toctree(page):
            if entry not in ordered:
                visit(entry)

    visit(INDEX.resolve())
    return ordered


def example_pages() -> list[Path]:
    """The pages whose examples the README's tests run: the README, then the site's."""
    return [README, *(page for page in site_pages() if page != PLUGIN_GUIDE.resolve())]


def blocks(language: str, pages: list[Path] | None = None) -> list[str]:
    """The fenced blocks of a language, page by page in order."""
    return [block for page in (example_pages() if pages is None else pages)
            for block in re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)]


def python_block(containing: str) -> str:
    """The one Python example, on any page, that contains a text."""
    (block,) = [b for b in blocks("python") if containing in b]
    return block
