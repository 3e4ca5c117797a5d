"""What `charseq cache` lists and clears, and what the cache evicts: each entry's size,
characters, sources and last use; deleting only the files charseq can vouch it wrote
(charseq.data.cache says how it knows), all of them, or the least recently used entries
that are not in use once the entries pass the cache's cap.

Nothing read from disk decides what is deleted but what charseq vouches for: a file is its
own only when it is a regular file of this user's (a stream's copy's folder: a folder of
theirs holding nothing but the copy) whose name or record carries this user's seal. An
entry's ids go before its record, so that an entry cut short (a file the system would not
delete) leaves a record that still vouches for what is left, for the next clear.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charseq.data.cache_cap import cache_cap
from charseq.data.cache import (ENTRY_NAME, HEX, LEFTOVER_NAME, SPOOL_FILE, SPOOL_NAME, cache_location,
                                file_identity, hold_alone, index_directory, indexed_key, is_leftover, load_json,
                                open_regular, owned, read_record, remove_spool, sha256_of, still_at)

EVICTION_WAIT = 10.0  # seconds to wait for another process's eviction (it takes milliseconds), then go on


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
    last_used: float | None = None  # when it was last written or read (seconds since the epoch)


@dataclass
class CacheReport:
    """The cache directory, what decided it (cache_location), its entries: those charseq
    vouches for, the most recently used first (the last is the next to be evicted), then
    those it cannot vouch for, which are never evicted; the bytes of charseq's own files in
    it (the index and leftovers included), the files named like charseq's that it cannot
    vouch for (an earlier release's, edited, or someone else's); the cap and
    CHARSEQ_CACHE_SIZE as given (cache_cap), and the bytes of the entries' files it vouches
    for, which the cap bounds."""

    directory: Path
    decided_by: str
    entries: list[CacheEntry]
    total_size: int
    unvouched: list[Path]
    cap: int | None = None
    cap_setting: str | None = None
    used: int = 0


def cache_report() -> CacheReport:
    """What the cache holds."""
    directory, decided_by = cache_location()
    own, unvouched = _files(directory)
    entries = _entries(directory, own, unvouched)
    entries.sort(key=lambda e: (not e.verified, -(e.last_used or 0.0)))
    used = sum(_size(path) for paths in _own_entries(directory, own).values() for path in paths)
    return CacheReport(directory, decided_by, entries, sum(_size(p) for p in own), unvouched, *cache_cap(), used)


def make_room(directory: Path, keep: str) -> list[str]:
    """Once an entry is written: evict the least recently used entries charseq can vouch for
    until the entries take at most the cap, never `keep` (the entry just written) nor an
    entry in use (charseq.data.cache.hold); the keys evicted, and their index lines. A
    record of charseq's whose ids are not (edited, replaced, gone) vouches for nothing: it
    goes first. One process evicts at a time, so that two that wrote at once do not both
    make the room."""
    cap = cache_cap()[0]
    if cap is None:
        return []
    evicted: list[str] = []
    index = index_directory(directory, create=True)  # its lock: only this user may open it
    try:
        if index is not None:
            hold_alone(index, wait=EVICTION_WAIT)  # (not had in time: evicted all the same; at worst, twice)
        entries = _own_entries(directory, _files(directory)[0])
        used = sum(_size(path) for paths in entries.values() for path in paths)
        whole = {key for key, paths in entries.items() if directory / f"{key}.ids" in paths}
        for key in sorted(entries, key=lambda key: (key in whole, _last_used(directory, key))):
            if used <= cap:
                break
            freed = None if key == keep else _evict(directory, key)
            if freed is not None:
                used -= freed
                evicted.append(key)
        if evicted and index is not None:
            _forget(directory, index, set(evicted))
    finally:
        if index is not None:
            os.close(index)
    return evicted


def _last_used(directory: Path, key: str) -> float:
    """When the entry was last written or read: its record's modification time, which a read
    sets (charseq.data.cache.load_entry)."""
    return _mtime(directory / f"{key}.json")


def _own_entries(directory: Path, own: list[Path]) -> dict[str, list[Path]]:
    """The files of each entry charseq vouches for, by key."""
    entries: dict[str, list[Path]] = {}
    for path in own:
        found = ENTRY_NAME.fullmatch(path.name)
        if found and path.parent == directory:
            entries.setdefault(found.group(1), []).append(path)
    return entries


def _evict(directory: Path, key: str) -> int | None:
    """Delete the entry `key` if charseq can vouch for it and no process has it in use: its
    ids while they are held alone, then its record while it is the one read; the bytes
    freed, or None when it stays. Ids that are not the ones the record names (edited,
    another user's, not a file) are not charseq's: they stay, and the record goes."""
    record_path, ids_path = directory / f"{key}.json", directory / f"{key}.ids"
    record = read_record(record_path, key)
    if record is None:
        return None
    freed = 0
    fd = open_regular(ids_path)
    if fd is not None:
        try:  # vouched for (hashed, at worst), then held alone until closed: a reader waits, then finds them gone
            if _names_ids(record, fd):
                if not (hold_alone(fd) and still_at(ids_path, fd)):
                    return None
                freed += os.fstat(fd).st_size
                os.unlink(ids_path)
        finally:
            os.close(fd)
    # A writer may have put a new entry there meanwhile (the ids are checked against it on
    # every load, so the worst is encoding again): its record is left.
    if read_record(record_path, key) == record:
        freed += _size(record_path)
        with contextlib.suppress(FileNotFoundError):
            record_path.unlink()
    return freed


def _forget(directory: Path, index: int, keys: set[str]) -> None:
    """Delete the sealed index lines that name `keys`, by name in the index directory open."""
    for name in _names_at(index):
        if re.fullmatch(HEX, name) and indexed_key(directory, name) in keys:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=index)


@dataclass
class Cleared:
    """What clear_cache did: the cache as it was (its report), the entries deleted whole, the
    bytes freed, and each file of charseq's the system would not delete, with why (they are
    left as they were, still vouched for: the next clear tries them again)."""

    report: CacheReport
    entries: int = 0
    freed: int = 0
    kept: list[tuple[Path, str]] = field(default_factory=list)


def clear_cache() -> Cleared:
    """Delete the files charseq can vouch it wrote in the cache, nothing else, going on past
    any the system refuses. A run that has an entry mapped keeps reading it until it ends."""
    cleared = Cleared(cache_report())
    directory = cleared.report.directory
    own = _files(directory)[0]
    entries = _own_entries(directory, own)
    index = index_directory(directory)
    try:
        for path in own:
            if path.parent != directory or not ENTRY_NAME.fullmatch(path.name):
                _delete(path, directory, index, cleared)
        for key, paths in entries.items():
            ids, record = directory / f"{key}.ids", directory / f"{key}.json"
            if ids in paths and not _delete(ids, directory, index, cleared):
                continue  # the record stays, vouching for the ids
            if _delete(record, directory, index, cleared) and ids in paths:
                cleared.entries += 1
        if index is not None:
            with contextlib.suppress(OSError):
                os.rmdir(directory / "index")  # only when nothing else is in it
    finally:
        if index is not None:
            os.close(index)
    return cleared


def _delete(path: Path, directory: Path, index: int | None, cleared: Cleared) -> bool:
    """Delete one file of charseq's (or a stream's copy's folder), counting what it frees;
    False, with why in `cleared`, where the system refuses."""
    size = _size(path)
    try:
        if path.parent == directory / "index":  # by name in the directory vouched for, never through a swap
            if index is None:
                return False
            os.unlink(path.name, dir_fd=index)
        elif _is_directory(path):
            remove_spool(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        cleared.kept.append((path, exc.strerror or str(exc)))
        return False
    cleared.freed += size
    return True


def _entries(directory: Path, own: list[Path], unvouched: list[Path]) -> list[CacheEntry]:
    """Every entry by its name, each marked as vouched for or not."""
    keys = {m.group(1) for p in own + unvouched if p.parent == directory and (m := ENTRY_NAME.fullmatch(p.name))}
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
        last_used = _last_used(directory, key)
        sources = [_printable(str(s)) for s in sources] if isinstance(sources, list) else None
        exact = shown.get("exact") if isinstance(shown.get("exact"), bool) else None
        encoding = shown.get("encoding") if isinstance(shown.get("encoding"), str) else None
        entries.append(CacheEntry(key, sum(_size(p) for p in paths), characters, sources, encoding, exact,
                                  record is not None and directory / f"{key}.ids" in own, last_used))
    return entries


def _files(directory: Path) -> tuple[list[Path], list[Path]]:
    """The files in the cache (and its index) that charseq can vouch it wrote, and those
    named like them that it cannot (a stream's copy's folder counts as a file)."""
    own: list[Path] = []
    unvouched: list[Path] = []
    for name in _names(directory):
        path = directory / name
        entry = ENTRY_NAME.fullmatch(name)
        if SPOOL_NAME.fullmatch(name) and _is_directory(path):
            (own if is_leftover(name) and _spool_of_ours(path) else unvouched).append(path)
            continue
        if entry is None and not LEFTOVER_NAME.fullmatch(name) or not _is_file(path):
            continue
        if entry is None:
            mine = is_leftover(name) and _file_of_ours(path)
        else:
            mine = _vouched(directory, entry.group(1), entry.group(2))
        (own if mine else unvouched).append(path)
    index = index_directory(directory)  # an index that is a link may point anywhere: nothing there is ours
    if index is not None:
        os.close(index)
        for name in _names(directory / "index"):
            path = directory / "index" / name
            if (re.fullmatch(HEX, name) or LEFTOVER_NAME.fullmatch(name)) and _is_file(path):
                mine = indexed_key(directory, name) is not None if not name.startswith(".") else is_leftover(name)
                (own if mine and _file_of_ours(path) else unvouched).append(path)
    return own, unvouched


def _spool_of_ours(folder: Path) -> bool:
    """A stream's copy's folder, the user's own, holding nothing but the copy, theirs too."""
    names = _names(folder)
    return _owned(folder) and set(names) <= {SPOOL_FILE} and all(_file_of_ours(folder / name) for name in names)


def _vouched(directory: Path, key: str, suffix: str) -> bool:
    """A record sealed for its key; ids that record names (the same file, or the same bytes);
    either a regular file of this user's (open_regular)."""
    record = read_record(directory / f"{key}.json", key)
    if record is None or suffix == "json":
        return record is not None
    fd = open_regular(directory / f"{key}.ids")
    if fd is None:
        return False
    try:
        return _names_ids(record, fd)
    finally:
        os.close(fd)


def _names_ids(record: dict[str, Any], fd: int) -> bool:
    """Whether the ids open at `fd` are the ones `record` names: the file written (an inode
    reused for another file has other times), or its bytes."""
    info = os.fstat(fd)
    if info.st_size != record["ids_file"][2]:  # (never hashes a planted sparse terabyte)
        return False
    if file_identity(info) == record["ids_file"]:
        return True
    with open(os.dup(fd), "rb") as ids:
        return sha256_of(ids) == record["ids_sha256"]


def _printable(text: str) -> str:
    """Text from a file anyone may have written, safe to print: no control characters (a
    terminal's escape sequences), each shown as its escape instead."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _names_at(folder: int) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _owned(path: Path) -> bool:
    try:
        return owned(os.lstat(path))
    except OSError:
        return False


def _file_of_ours(path: Path) -> bool:
    """A regular file (never a link, a folder, a pipe) of this user's."""
    return _is_file(path) and _owned(path)


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
    """A file's bytes; a stream's copy's folder's, its copy's."""
    try:
        info = os.lstat(path)
        return os.lstat(path / SPOOL_FILE).st_size if stat.S_ISDIR(info.st_mode) else info.st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0
