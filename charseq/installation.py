"""How this copy of charseq was installed, and so the pip command that adds an extra to it:
charseq is not on an index yet, so ``pip install 'charseq[serve]'`` fails for anyone who
installed it from a checkout (PEP 610's direct_url.json says where it came from)."""

from __future__ import annotations

import json
import shlex
import sys
from importlib import metadata
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname


def installed_from() -> dict[str, Any] | None:
    """Where pip installed charseq from, as its direct_url.json says (a checkout or a wheel
    on disk, a VCS URL); None from an index, or when charseq is not installed."""
    # Every copy of the metadata on the path, not only the first: a checkout's own folder
    # may hold a stale charseq.egg-info (from a build) that says nothing of where it came from.
    for distribution in metadata.distributions(name="charseq"):
        try:
            text = distribution.read_text("direct_url.json")
            found = json.loads(text) if text else None
        except (ValueError, OSError):
            continue
        if isinstance(found, dict) and isinstance(found.get("url"), str):
            return found
    return None


def install_command(extra: str) -> str:
    """The pip command that installs charseq with `extra` into this very environment, the way
    this copy was installed: ``python -m pip install -e '/path/charseq[serve]'`` for an
    editable checkout, the checkout's or wheel's path, a VCS URL, else the index. It names
    this interpreter's pip, which a bare ``pip`` on the PATH may not be."""
    return f"{shlex.quote(sys.executable or 'python3')} -m pip install {_requirement(extra)}"


def _requirement(extra: str) -> str:
    source = installed_from()
    wanted = f"charseq[{extra}]"
    if source is None:
        return shlex.quote(wanted)
    url = source["url"]
    if url.startswith("file:"):
        path = url2pathname(unquote(urlparse(url).path))
        info = source.get("dir_info")
        editable = "-e " if isinstance(info, dict) and info.get("editable") is True else ""
        return editable + shlex.quote(path + "[" + extra + "]")
    vcs = source.get("vcs_info")
    if isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str):
        revision = "@" + vcs["commit_id"] if isinstance(vcs.get("commit_id"), str) else ""
        return shlex.quote(wanted + " @ " + vcs["vcs"] + "+" + url + revision)
    return shlex.quote(wanted + " @ " + url)
