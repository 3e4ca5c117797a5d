"""The documentation site holds together: every page is in its contents, the README's links
into it resolve, the README keeps the set-up commands CI runs, and the references cover
every public name and every command, a plugin's included. (CI builds the site itself with
warnings as errors, which checks the links between pages.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pages import DOCS, INDEX, README, ROOT, site_pages

pytestmark = pytest.mark.skipif(not INDEX.is_file(), reason="needs the source checkout")


def _slug(heading: str) -> str:
    """A heading's anchor, as GitHub and MyST's heading anchors make it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_page_is_in_the_contents():
    pages = {page.relative_to(DOCS.resolve()) for page in site_pages()}
    on_disk = {page.relative_to(DOCS) for page in DOCS.rglob("*.md") if "_build" not in page.parts}
    assert on_disk - pages == set(), "pages no toctree lists"
    assert pages - on_disk == set(), "toctree entries without a page"


def _resolves(page, link: str) -> bool:
    """A relative link resolves as GitHub resolves it: the file or folder is there, and an
    anchor names one of its headings."""
    path, _, anchor = link.partition("#")
    target = (page.parent / path) if path else page
    if not target.exists():
        return False
    if not anchor:
        return True
    headings = re.findall(r"^#+ (.*)$", target.read_text(), re.M)
    return anchor in {_slug(h) for h in headings}


def _relative_links(page) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not in code
    return [link for link in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in link]


def test_the_readmes_links_into_docs_resolve():
    links = [link for link in _relative_links(README) if link.startswith("docs/")]
    assert len(links) >= len(site_pages()) - 1  # every page but the index, which the folder link opens
    assert [link for link in links if not _resolves(README, link)] == []


def test_the_links_between_pages_resolve_on_github_too():
    """Sphinx checks them in the site (CI builds it with warnings as errors); the pages are
    read on GitHub as well, where an anchor is GitHub's slug of a heading."""
    broken = [f"{page.name}: {link}" for page in site_pages() for link in _relative_links(page)
              if not _resolves(page, link)]
    assert broken == []


def test_the_readme_opens_with_the_two_set_up_commands_ci_runs():
    first, second = re.findall(r"```sh\n(.*?)\n```", README.read_text(), re.S)[:2]
    assert first == "python3 -m venv .venv && . .venv/bin/activate && pip install . && charseq train --corpus alphabet"
    assert second == 'pip install ".[test]" && pytest'
    assert second in (ROOT / ".ci" / "run").read_text()


def test_the_api_reference_documents_every_public_name():
    import charseq

    page = (DOCS / "reference" / "api.md").read_text()
    documented = re.findall(r"^\.\. (?:auto\w+|py:\w+):: charseq\.(\w+)$", page, re.M)
    assert sorted(documented) == sorted(charseq.__all__)


def test_the_command_reference_reads_the_plugin_commands_too():
    """sphinx-click reads the group's commands as they stand; the site's configuration adds
    the bundled plugin's `serve`, `export` and `sweep` first, and only the bundled plugins'."""
    probe = f"exec(open({str(DOCS / 'conf.py')!r}).read()); print(' '.join(sorted(cli.commands)))"
    env = {k: v for k, v in os.environ.items() if k != "CHARSEQ_LOAD_PLUGINS"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=DOCS, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cache", "callbacks", "corpora", "eval", "export", "generate", "models", "plot",
                                     "plugins", "samplers", "serve", "sweep", "train"]
