"""What `charseq cache` lists and clears: each entry's size, characters and sources, and
deleting only the files charseq can vouch it wrote (charseq.data.cache says how it knows).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from charseq.data.cache import (ENTRY_NAME, HEX, LEFTOVER_NAME, SPOOL_NAME, cache_location, file_identity,
                                index_directory, indexed_key, is_leftover, load_json, open_regular, read_record,
                                sha256_of)


@dataclass
class CacheEntry:
    """One encoded text: its key, bytes on disk, characters, and the files it was encoded
    from (None when unknown); `verified` when charseq can vouch that it wrote it."""

    key: str
    size: int
    characters: int | None
    sources: list[str] | None
    encoding: str | None = None
    exact: bool | None = None
    verified: bool = False


@dataclass
class CacheReport:
    """The cache directory, what decided it (cache_location), its entries, newest first; the
    bytes of charseq's own files in it (the index and leftovers included), and the files
    named like charseq's that it cannot vouch for (an earlier release's, or someone else's)."""

    directory: Path
    decided_by: str
    entries: list[CacheEntry]
    total_size: int
    unvouched: list[Path]


def cache_report() -> CacheReport:
    """What the cache holds."""
    directory, decided_by = cache_location()
    own, unvouched = _files(directory)
    entries = _entries(directory, own, unvouched)
    entries.sort(key=lambda e: _mtime(directory / f"{e.key}.ids"), reverse=True)
    return CacheReport(directory, decided_by, entries, sum(_size(p) for p in own), unvouched)


def clear_cache() -> tuple[CacheReport, int]:
    """Delete the files charseq can vouch it wrote in the cache, nothing else; what it held,
    and the bytes freed. A run that has an entry mapped keeps reading it until it ends."""
    report = cache_report()
    freed = 0
    index = index_directory(report.directory)
    try:
        for path in _files(report.directory)[0]:
            size = _size(path)
            try:
                if path.parent.name == "index":  # by name in the directory vouched for, never through a swap
                    if index is not None:
                        os.unlink(path.name, dir_fd=index)
                elif _is_directory(path):  # a stream's copy, in its own folder
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            freed += size
        if index is not None:
            with contextlib.suppress(OSError):
                os.rmdir(report.directory / "index")  # only when nothing else is in it
    finally:
        if index is not None:
            os.close(index)
    return report, freed


def _entries(directory: Path, own: list[Path], unvouched: list[Path]) -> list[CacheEntry]:
    """Every entry by its name, each marked as vouched for or not."""
    keys = {m.group(1) for p in own + unvouched if p.parent == directory and (m := ENTRY_NAME.match(p.name))}
    entries = []
    for key in keys:
        paths = [p for p in own + unvouched if p.name in (f"{key}.ids", f"{key}.json")]
        record = read_record(directory / f"{key}.json", key)
        shown = record or load_json(directory / f"{key}.json")
        try:
            characters = int(shown["length"])
        except (ValueError, KeyError, TypeError):
            entries.append(CacheEntry(key, sum(_size(p) for p in paths), None, None))  # half written, or damaged
            continue
        sources = shown.get("sources")
        sources = [_printable(str(s)) for s in sources] if isinstance(sources, list) else None
        exact = shown.get("exact") if isinstance(shown.get("exact"), bool) else None
        encoding = shown.get("encoding") if isinstance(shown.get("encoding"), str) else None
        entries.append(CacheEntry(key, sum(_size(p) for p in paths), characters, sources, encoding, exact,
                                  record is not None and directory / f"{key}.ids" in own))
    return entries


def _files(directory: Path) -> tuple[list[Path], list[Path]]:
    """The regular files in the cache (and its index) that charseq can vouch it wrote, and
    those named like them that it cannot."""
    own: list[Path] = []
    unvouched: list[Path] = []
    for name in _names(directory):
        path = directory / name
        entry = ENTRY_NAME.match(name)
        if SPOOL_NAME.match(name) and _is_directory(path) and _owned(path):
            (own if is_leftover(name) else unvouched).append(path)
            continue
        if entry is None and not LEFTOVER_NAME.match(name) or not _is_file(path):
            continue
        mine = is_leftover(name) if entry is None else _vouched(directory, entry.group(1), entry.group(2))
        (own if mine else unvouched).append(path)
    index = index_directory(directory)  # an index that is a link may point anywhere: nothing there is ours
    if index is not None:
        os.close(index)
        for name in _names(directory / "index"):
            path = directory / "index" / name
            if (re.fullmatch(HEX, name) or LEFTOVER_NAME.match(name)) and _is_file(path):
                mine = indexed_key(directory, name) is not None if not name.startswith(".") else is_leftover(name)
                (own if mine else unvouched).append(path)
    return own, unvouched


def _vouched(directory: Path, key: str, suffix: str) -> bool:
    """A record sealed for its key; ids that record names (the same file, or the same bytes)."""
    record = read_record(directory / f"{key}.json", key)
    if record is None or suffix == "json":
        return record is not None
    fd = open_regular(directory / f"{key}.ids")
    if fd is None:
        return False
    with open(fd, "rb") as ids:  # the file written (an inode reused for another file has other times), or its bytes
        info = os.fstat(fd)
        if info.st_size != record["ids_file"][2]:  # (never hashes a planted sparse terabyte)
            return False
        return file_identity(info) == record["ids_file"] or sha256_of(ids) == record["ids_sha256"]


def _printable(text: str) -> str:
    """Text from a file anyone may have written, safe to print: no control characters (a
    terminal's escape sequences), each shown as its escape instead."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _owned(path: Path) -> bool:
    try:
        return os.lstat(path).st_uid == os.geteuid() if hasattr(os, "geteuid") else True
    except OSError:
        return False


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
