"""Sphinx configuration for charseq's documentation site.

Build it from a checkout: pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Only the bundled plugins: the reference documents charseq, not whatever else is installed here.
os.environ["CHARSEQ_LOAD_PLUGINS"] = ""

from charseq.cli import cli  # noqa: E402  (after the variable: the registry reads it when it loads)
from charseq.version import __version__  # noqa: E402

# sphinx-click reads a group's commands as they stand; `serve`, `export` and `sweep` are a
# plugin's, added through register_commands when the group first looks them up.
cli.add_plugin_commands()

project = "charseq"
author = "charseq's authors"
release = version = __version__

extensions = [
    "myst_parser",  # the pages are Markdown, readable on GitHub as they are
    "sphinx.ext.autodoc",  # the Python API and the hook specifications, from their docstrings
    "sphinx_click",  # every command and option, from the click definitions
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["dollarmath", "amsmath"]  # the models' equations, as GitHub shows them too
myst_heading_anchors = 3  # `page.md#a-heading` links, as on GitHub

autodoc_member_order = "bysource"
autodoc_typehints = "description"

smartquotes = False  # `--force` in a command's help stays two hyphens, not a dash

html_theme = "furo"
html_title = f"charseq {release}"


def _folder_links_as_paths(app, doctree):
    """A link to a folder of the repository (`../examples/charseq-example`) works on GitHub,
    where the pages are read too; the site has no copy of the folder, so it shows the path."""
    from docutils import nodes
    from sphinx import addnodes

    here = (Path(app.srcdir) / app.env.docname).parent
    for node in list(doctree.findall(addnodes.pending_xref)):
        target = node.get("reftarget", "")
        if node.get("reftype") == "myst" and target and (here / target).is_dir():
            node.replace_self(nodes.literal(target, node.astext()))


def _help_as_written(app, ctx, lines):
    """sphinx-click reads click's help as reStructuredText; charseq's is plain text, so its
    backslashes (`\\r\\n`) are kept, and a metavar's closing bracket (`NAME[:ARG]`), which
    sphinx-click strips with the angle brackets, is put back."""
    for index, line in enumerate(lines):
        if line.startswith(".. option::"):
            lines[index] = re.sub(r"<([^<>\]]*\[[^\]<>]*)>", r"<\1]>", line)
        else:
            lines[index] = line.replace("\\", "\\\\")


def setup(app):
    for event in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{event}", _help_as_written)
    # As each page is read: before MyST resolves its links, which would call a folder missing.
    app.connect("doctree-read", _folder_links_as_paths)
