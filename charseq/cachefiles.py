"""What charseq's text cache holds, and clearing it.

The cache directory may be one the user chose (CHARSEQ_CACHE) and shares with other
things, so only the files charseq writes there are counted or deleted, known by their
names: each entry's ``KEY.ids`` and ``KEY.json`` (KEY a SHA-256 in hex), the quick index
``index/DIGEST``, and what an interrupted write or a stream's copy left behind.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from charseq.textfiles import cache_location

_HEX = "[0-9a-f]{64}"
_ENTRY = re.compile(rf"^({_HEX})\.(ids|json)$")
_LEFTOVER = re.compile(rf"^\.{_HEX}(\.ids|\.json)?\.[0-9a-f]{{8}}\.tmp$|^\.spool-[A-Za-z0-9_]+\.tmp$")
_INDEX = re.compile(rf"^{_HEX}$|^\.{_HEX}\.[0-9a-f]{{8}}\.tmp$")


@dataclass
class CacheEntry:
    """One encoded text: its key, bytes on disk, characters, and the files it was encoded
    from (None when an earlier release encoded it without saying)."""

    key: str
    size: int
    characters: int | None
    sources: list[str] | None
    encoding: str | None = None
    exact: bool | None = None


@dataclass
class CacheReport:
    """The cache directory, what decided it (cache_location), its entries, newest first,
    and the bytes of all charseq's files in it (the index and leftovers included)."""

    directory: Path
    decided_by: str
    entries: list[CacheEntry]
    total_size: int


def cache_report() -> CacheReport:
    """What the cache holds."""
    directory, decided_by = cache_location()
    files = _own_files(directory)
    by_key: dict[str, list[Path]] = {}
    for path in files:
        match = _ENTRY.match(path.name)
        if match and path.parent == directory:
            by_key.setdefault(match.group(1), []).append(path)
    entries = [_entry(directory, key, paths) for key, paths in by_key.items()]
    entries.sort(key=lambda e: _mtime(directory / f"{e.key}.ids"), reverse=True)
    return CacheReport(directory, decided_by, entries, sum(_size(p) for p in files))


def clear_cache() -> tuple[CacheReport, int]:
    """Delete charseq's files in the cache (nothing else there); what it held, and the bytes
    freed. A run that has an entry mapped keeps reading it: the pages stay until it ends."""
    report = cache_report()
    freed = 0
    for path in _own_files(report.directory):
        size = _size(path)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        freed += size
    try:
        (report.directory / "index").rmdir()  # only when nothing else is in it
    except OSError:
        pass
    return report, freed


def _entry(directory: Path, key: str, paths: list[Path]) -> CacheEntry:
    size = sum(_size(p) for p in paths)
    try:
        meta = json.loads((directory / f"{key}.json").read_text(encoding="utf-8"))
        characters = int(meta["length"])
    except (OSError, ValueError, KeyError, TypeError):
        return CacheEntry(key, size, None, None)  # half written, or damaged: loading encodes it again
    sources = meta.get("sources")
    sources = [str(s) for s in sources] if isinstance(sources, list) else None
    exact = meta.get("exact") if isinstance(meta.get("exact"), bool) else None
    return CacheEntry(key, size, characters, sources, meta.get("encoding"), exact)


def _own_files(directory: Path) -> list[Path]:
    """The regular files charseq wrote in the cache directory and its index, by name."""
    found = []
    for folder, pattern in ((directory, None), (directory / "index", _INDEX)):
        if folder != directory and not _is_directory(folder):
            continue  # an index that is a link may point anywhere: nothing there is the cache's
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            mine = pattern.match(name) if pattern else (_ENTRY.match(name) or _LEFTOVER.match(name))
            path = folder / name
            if mine and _is_file(path):
                found.append(path)
    return found


def _is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)  # a real directory, not a link to one
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)  # never a link, whatever its name
    except OSError:
        return False


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0
