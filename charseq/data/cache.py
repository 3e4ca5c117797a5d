"""charseq's text cache: where it lives, its entries, its quick index, and its files being
written (what `charseq cache` lists and clears is charseq.data.cache_listing).

An entry is a text's ids (``KEY.ids``, memory-mapped by the runs that train on it) and its
record (``KEY.json``: the vocabulary, the length, where the text came from, and the
SHA-256 of the ids), KEY being the text's content key (charseq.data.text). The directory
may be shared, with other people or with other things (CHARSEQ_CACHE names any
directory), so nothing in it is trusted for its name:

- each record is sealed with this user's key (charseq.trust), which binds it to its KEY;
- the ids are checked against the record's digest before they are used, hashed again only
  when the file is not the one the record names (another inode or size, or another change
  time, which only the kernel sets);
- a line of the quick index (path, size and times -> KEY) is sealed too;
- a file being written carries in its name a token sealed with that name (which anyone
  listing the cache sees, and may copy: so a file is charseq's only if it is also the
  user's own, a regular file; see `owned`).

What fails these checks is never used (the text is encoded again, over it), and `clear`
deletes only what passes them: a file named like charseq's but put there by someone else
is left alone.

The entries may take at most the cache's cap (CHARSEQ_CACHE_SIZE, 1 GiB by default): when
an entry is written, the least recently used are evicted (charseq.data.cache_listing). A
read refreshes an entry (its record's modification time), and a process that has an
entry's ids open or mapped holds a shared lock on them, which an eviction's exclusive one
cannot take: an entry in use is never evicted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from charseq import trust
from charseq.errors import CharseqWarning, SaveError, UsageError
from charseq.files import atomic_write
from charseq.data.cache_cap import cache_cap
from charseq.data.vocab import Vocabulary

ENTRY_FORMAT = 2  # 1: 0.3-0.5, unsealed (never trusted now: such an entry is encoded again)
HEX = "[0-9a-f]{64}"
# Names are matched whole (fullmatch: a name ending in a newline is another file's)
ENTRY_NAME = re.compile(rf"({HEX})\.(ids|json)")
_TOKEN = "[0-9a-f]{24}"  # 8 random hex digits, then 16 of their seal
_TEMP_NAME = re.compile(rf"\.(.+)\.({_TOKEN})\.[0-9a-f]{{8}}\.tmp")  # .NAME.TOKEN.XXXXXXXX.tmp, in place of NAME
SPOOL_NAME = re.compile(rf"\.spool-({_TOKEN})\.tmp")  # a folder holding a stream's copy
SPOOL_FILE = "text"  # the one file in that folder
# What an interrupted write may have left, by name, this release's or an earlier one's: listed, deleted only when sealed
LEFTOVER_NAME = re.compile(r"\.[0-9a-f]{64}(\.ids|\.json)?\.([0-9a-f]{24}\.)?[0-9a-f]{8}\.tmp|\.spool-.+\.tmp")
_HASH_CHUNK = 1 << 22
RECORD_LIMIT = 64 << 20  # a record lists the files a text came from: a directory of many; never more than this
LOCK_WAIT = 2.0  # seconds a reader waits for an eviction that holds an entry (it takes milliseconds)

try:
    import fcntl
except ImportError:  # no flock (Windows): nothing can tell an entry in use, so nothing is evicted
    fcntl = None  # type: ignore[assignment]


# -- where the cache is ------------------------------------------------------------------


def cache_dir() -> Path:
    """$CHARSEQ_CACHE, else $XDG_CACHE_HOME/charseq, else ~/.cache/charseq: made if missing.

    A CHARSEQ_CACHE that cannot be used is an error naming it; when the default place
    cannot be used (a read-only home), a directory under the system's temporary one is.
    """
    return cache_location()[0]


def cache_location() -> tuple[Path, str]:
    """The cache directory, as cache_dir() finds it, and what decided it: "CHARSEQ_CACHE",
    "XDG_CACHE_HOME", "default" (~/.cache) or "fallback" (the temporary directory), so that
    `charseq cache` can say which setting to change. A bad cap is said here too: before a
    text is encoded, not after."""
    cache_cap()
    chosen = os.environ.get("CHARSEQ_CACHE")
    if chosen:
        problem = _unusable(Path(chosen))
        if problem:
            raise UsageError(f"CHARSEQ_CACHE={chosen!r} cannot hold charseq's cache ({problem}); point it at a "
                             "writable directory, or unset it")
        return Path(chosen), "CHARSEQ_CACHE"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    default = Path(base) / "charseq"
    problem = _unusable(default)
    if not problem:
        return default, "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "default"
    fallback = Path(tempfile.gettempdir()) / f"charseq-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    if _unusable(fallback, private=True):
        raise UsageError(f"no usable cache directory: {str(default)!r} ({problem}); set CHARSEQ_CACHE to a writable "
                         "directory")
    warnings.warn(f"the cache directory {str(default)!r} cannot be used ({problem}); using {str(fallback)!r} "
                  "(set CHARSEQ_CACHE to choose)", CharseqWarning, stacklevel=3)
    return fallback, "fallback"


def owned(info: os.stat_result) -> bool:
    """Whether the file `info` describes is this user's. In a shared cache (mode 1777) anyone
    may make a file under any name, a sealed token's included (it is in a name anyone can
    list): another user's file is never charseq's, and could not be deleted anyway."""
    return info.st_uid == os.geteuid() if hasattr(os, "geteuid") else True


def _unusable(directory: Path, private: bool = False) -> str | None:
    """Why `directory` cannot hold the cache, or None when it can (made if missing). In a
    shared place (the temporary directory) it must be the user's own, writable by nobody
    else: another user's directory there could fill it with names charseq then trips over."""
    try:
        directory.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private:
            info = os.lstat(directory)
            if not stat.S_ISDIR(info.st_mode) or not owned(info) or info.st_mode & 0o077:
                return "it belongs to another user, or others may write it"
        with tempfile.TemporaryFile(dir=directory):
            pass
    except FileExistsError:
        return "it is not a directory"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


# -- entries -----------------------------------------------------------------------------


@dataclass
class Entry:
    """A text as the cache holds it: its vocabulary, its ids (memory-mapped), and the files
    left out of it (by their place in the list of files, with why), which every load names."""

    vocab: Vocabulary
    ids: np.ndarray
    skipped: list[tuple[int, str]]
    ids_file: list[int]  # the identity of the file mapped (os.stat's device, inode, size and times)


def load_entry(directory: Path, key: str) -> Entry | None:
    """The entry under `key` if charseq wrote it and it is as written; None when there is
    none, or one that cannot be vouched for (the text is then encoded again, over it). Its
    ids stay locked as in use while they are mapped, and the entry counts as used now."""
    path = directory / f"{key}.json"
    record = read_record(path, key)
    if record is None:
        if _claims_format(path):  # a record of this format that fails its checks: say so
            warnings.warn(f"the cache's entry {key[:12]}... is not as charseq wrote it (edited, or put there by "
                          "someone else): encoding the text again", CharseqWarning, stacklevel=3)
        return None
    try:
        entry = _map(directory / f"{key}.ids", record)
    except _Evicted:  # evicted as it was read: encoded again, as if it had not been there
        return None
    if entry is None:
        warnings.warn(f"the cache's ids {key[:12]}... are not the ones charseq wrote (edited, or replaced): encoding "
                      "the text again", CharseqWarning, stacklevel=3)
    elif record["ids_file"] != entry.ids_file:  # a copied cache, a restored backup: the new file is named, so
        _write_record(path, _sealed_record(record, entry.ids_file))  # the next load need not hash it again
    else:
        with contextlib.suppress(OSError):  # used now: the least recently used are evicted first
            os.utime(path, follow_symlinks=False)
    return entry


def save_entry(directory: Path, key: str, pieces: Iterable[np.ndarray], record: dict[str, Any]) -> Entry:
    """Write a text's ids, piece by piece, into a new file of charseq's, map them from it, then
    publish it under `key` with its sealed record; the entry. An exception from `pieces`
    (the text changed while it was read) leaves nothing behind. The mapping is of the file
    written, whatever is done to the cache's names meanwhile; where the entry's place is
    taken by what charseq does not replace (a directory, a pipe, another user's file in a
    shared cache), the ids serve this run only."""
    ids_path, record_path = directory / f"{key}.ids", directory / f"{key}.json"
    digest = hashlib.sha256()
    fd, temp = _new_file_of_ours(directory, f"{key}.ids")
    hold(fd)  # in use from the start: never evicted, by its name or its temporary one, while it is mapped
    published = False
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            for piece in pieces:
                digest.update(piece.data)
                piece.tofile(out)
        record = {**record, "format": ENTRY_FORMAT, "key": key, "ids_sha256": digest.hexdigest()}
        published = not (_taken(ids_path) or _taken(record_path)) and _renamed(temp, ids_path)
        info = os.fstat(fd)  # (after the rename, which changes the file's change time)
        entry = _entry_from(fd, {**record, "ids_file": file_identity(info)})
    finally:
        os.close(fd)
        if not published:
            temp.unlink(missing_ok=True)  # mapped already: the pages stay until the run ends
    assert entry is not None  # (the file just written, through its own descriptor)
    if not published:
        warnings.warn(f"the cache's place for entry {key[:12]}... holds what charseq does not replace (a directory, "
                      "a pipe, another user's file): the text is encoded for this run only", CharseqWarning,
                      stacklevel=3)
        return entry
    sealed = _sealed_record(record, entry.ids_file)
    if sealed["seal"] is None:
        _warn_unsealed()
    _write_record(record_path, sealed)
    return entry


def _new_file_of_ours(directory: Path, name: str) -> tuple[int, Path]:
    """A new file `.NAME.TOKEN.XXXXXXXX.tmp` in `directory`, open for reading and writing,
    with the permissions of any new file (never a mode taken from what it will replace)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = directory / f".{name}.{temp_token(name)}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name in {directory}")


def _renamed(temp: Path, target: Path) -> bool:
    """Put `temp` at `target` (replacing a file or a link there, never following it); False
    where the system refuses (another user's file in a sticky directory, a directory made
    there meanwhile)."""
    try:
        os.replace(temp, target)
    except OSError:
        return False
    return True


def _taken(path: Path) -> bool:
    """Whether something charseq never replaces is at `path` (a link or a file it replaces)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISLNK(mode))


class _Evicted(Exception):
    """The entry was being evicted as it was read."""


def _map(path: Path, record: dict[str, Any]) -> Entry | None:
    """The ids the record vouches for, mapped from the file that was checked (never one
    put in its place meanwhile, never a link, a pipe or a directory), and held as in use;
    None when they are not the ones it names. _Evicted when an eviction had them."""
    fd = open_regular(path)
    if fd is None:
        if not os.path.lexists(path):  # (an eviction unlinks the ids first)
            raise _Evicted
        return None
    try:
        if not hold(fd, wait=LOCK_WAIT) or not still_at(path, fd):
            raise _Evicted
        return _entry_from(fd, record)
    finally:
        os.close(fd)


def hold(fd: int, wait: float = 0.0) -> bool:
    """Mark the file open at `fd` as in use, for as long as it, or a mapping of it, is open
    (a shared lock: it lives with the open file, which a mapping keeps); False when an
    eviction holds it (waited for up to `wait` seconds). Where the file system has no locks,
    nothing is held, and nothing can be evicted either (see hold_alone)."""
    return _lock(fd, shared=True, wait=wait)


def hold_alone(fd: int, wait: float = 0.0) -> bool:
    """Hold the file (or directory) open at `fd` alone, until `fd` is closed: an exclusive
    lock, which no one can have while another process holds it in use (waited for up to
    `wait` seconds); False when that cannot be had, or known (no locks)."""
    return _lock(fd, shared=False, wait=wait)


def _lock(fd: int, shared: bool, wait: float) -> bool:
    """flock `fd`, trying until `wait` has passed. Without locks, a shared one counts as had
    (a reader goes on) and an exclusive one as not (nothing is evicted)."""
    if fcntl is None:
        return shared
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        except OSError:  # no locks here
            return shared


def still_at(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open at `fd` (not evicted, nor replaced, meanwhile)."""
    try:
        here, there = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _entry_from(fd: int, record: dict[str, Any]) -> Entry | None:
    """The entry of the ids open at `fd`, when they are the ones `record` names: the same
    file (identity), or the same bytes (digest); None otherwise."""
    vocab = Vocabulary(record["symbols"])
    dtype, length = np.dtype(record["dtype"]), int(record["length"])
    skipped = [(int(index), str(why)) for index, why in record.get("skipped", [])]
    info = os.fstat(fd)
    if dtype != vocab.dtype or length < 1 or info.st_size != length * dtype.itemsize:
        return None
    with open(os.dup(fd), "rb") as ids:
        if file_identity(info) != record["ids_file"] and sha256_of(ids) != record["ids_sha256"]:
            return None  # another file than the one written, whose bytes are not those it held
        return Entry(vocab, np.memmap(ids, dtype=dtype, mode="r", shape=(length,)), skipped, file_identity(info))


def open_regular(path: Path) -> int | None:
    """A descriptor for reading the regular file of this user's at `path`; None for anything
    else (another user's file, in a shared cache, may change under a run that trusted it).
    Opened without following a link and without waiting on a pipe, then checked by what it
    opened."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and owned(info):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _read_small(path: Path, limit: int = RECORD_LIMIT) -> bytes | None:
    """The bytes of a small regular file (a record, an index line); None for anything else:
    a link, a pipe that would never end, a file larger than any charseq writes there."""
    fd = open_regular(path)
    if fd is None:
        return None
    with open(fd, "rb") as small:
        size = os.fstat(fd).st_size
        if size > limit:
            return None
        return small.read(size + 1)  # (read(limit) would first allocate the limit: 64 MB for each record)


def file_identity(info: os.stat_result) -> list[int]:
    """What names one written file: a copy, a replacement or an edit changes one of these."""
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _sealed_record(record: dict[str, Any], ids_file: list[int]) -> dict[str, Any]:
    record = {name: value for name, value in record.items() if name != "seal"}
    record["ids_file"] = ids_file
    return {**record, "seal": trust.seal(_record_text(record))}


def _record_text(record: dict[str, Any]) -> str:
    unsealed = {name: value for name, value in record.items() if name != "seal"}
    return "charseq-cache-entry\0" + json.dumps(unsealed, sort_keys=True, ensure_ascii=True)


def load_json(path: Path) -> Any:
    data = _read_small(path)
    try:
        return None if data is None else json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


def read_record(path: Path, key: str) -> dict[str, Any] | None:
    """A record this user's charseq sealed, for this key; None for anything else."""
    record = load_json(path)
    if not isinstance(record, dict) or record.get("format") != ENTRY_FORMAT or record.get("key") != key:
        return None
    if not trust.sealed(_record_text(record), record.get("seal")):
        return None
    try:
        Vocabulary(record["symbols"])
        return record if isinstance(record["ids_file"], list) and isinstance(record["ids_sha256"], str) else None
    except (KeyError, TypeError, UsageError):
        return None


def _claims_format(path: Path) -> bool:
    """A record of this format with a seal (one written without a key has none)."""
    record = load_json(path)
    return isinstance(record, dict) and record.get("format") == ENTRY_FORMAT and record.get("seal") is not None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a record; one that cannot be written (a cache others made read-only, a
    directory in its place) only means the next load hashes the ids again."""
    with contextlib.suppress(SaveError):
        _write_small(path, json.dumps(record, ensure_ascii=False).encode("utf-8"))


@functools.cache
def _warn_unsealed() -> None:
    """Once a process: without a key, the cache cannot vouch for what it writes."""
    warnings.warn(f"{trust.problem()}: the text cache cannot vouch for its entries, so each run encodes its text "
                  "again", CharseqWarning, stacklevel=4)


# -- the quick index: a file's path, size and times -> its content key --------------------


def indexed_key(directory: Path, name: str) -> str | None:
    """The content key the index holds under `name` (a digest of paths and stat fields), if
    charseq sealed it there, in the cache's own index directory."""
    index = index_directory(directory)
    if index is None:
        return None
    try:
        data = _read_small_at(index, name, 1024)
    finally:
        os.close(index)
    try:
        key, _, seal = (data or b"").decode("ascii").strip().partition(" ")
    except UnicodeDecodeError:
        return None
    return key if re.fullmatch(HEX, key) and trust.sealed(_index_text(name, key), seal) else None


def index_key(directory: Path, name: str, key: str) -> None:
    """Remember `key` under `name`, sealed. Without a key, or where `index` is not a directory
    of this user's alone (a link, a file, someone else's), nothing is remembered."""
    seal = trust.seal(_index_text(name, key))
    index = index_directory(directory, create=True) if seal is not None else None
    if index is None:
        return
    temp = f".{name}.{temp_token(name)}.{secrets.token_hex(4)}.tmp"
    try:  # every name relative to the directory opened, which a name swapped meanwhile cannot move
        line = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666,
                       dir_fd=index)
        with os.fdopen(line, "wb") as out:
            out.write(f"{key} {seal}\n".encode("ascii"))
        os.replace(temp, name, src_dir_fd=index, dst_dir_fd=index)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=index)
    finally:
        os.close(index)


def index_directory(directory: Path, create: bool = False) -> int | None:
    """A descriptor of the cache's index directory, made when missing (`create`): a real
    directory of this user's that no one else may write, so that no one can swap what is
    in it; None for anything else."""
    path = directory / "index"
    if create:
        with contextlib.suppress(OSError):
            path.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode) and owned(info) and not info.st_mode & 0o022:
        return fd
    os.close(fd)
    return None


def _read_small_at(directory_fd: int, name: str, limit: int) -> bytes | None:
    """_read_small, for a name in an open directory."""
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                     dir_fd=directory_fd)
    except OSError:
        return None
    with open(fd, "rb") as small:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not owned(info) or info.st_size > limit:
            return None
        return small.read(limit + 1)


def _index_text(name: str, key: str) -> str:
    return f"charseq-cache-index\0{name}\0{key}"


# -- files being written -----------------------------------------------------------------


def temp_token(name: str | None) -> str:
    """A token for the name of a file being written in `name`'s place (None: a stream's copy's
    folder): random, then sealed with that name, so that what an interrupted write leaves
    behind can be told from a look-alike, the same token in another name included."""
    nonce = secrets.token_hex(4)
    seal = trust.seal(_temp_text(name, nonce))
    return nonce + (seal[:16] if seal else secrets.token_hex(8))


def is_leftover(name: str) -> bool:
    """Whether `name` is one charseq gave a file being written (or a stream's copy's folder):
    its token sealed for it. Whether the file is the user's own is the caller's to check."""
    target: str | None
    if temp := _TEMP_NAME.fullmatch(name):
        target, token = temp.group(1), temp.group(2)
    elif spool := SPOOL_NAME.fullmatch(name):
        target, token = None, spool.group(1)
    else:
        return False
    seal = trust.seal(_temp_text(target, token[:8]), create=False)
    return seal is not None and secrets.compare_digest(seal[:16], token[8:])


def _temp_text(name: str | None, nonce: str) -> str:
    return f"charseq-cache-spool\0{nonce}" if name is None else f"charseq-cache-temp\0{name}\0{nonce}"


@contextlib.contextmanager
def spool_file(directory: Path) -> Iterator[tuple[int, Path]]:
    """A new file for a stream's copy (an open descriptor and its path), in a directory of
    its own that only this user may enter: read again by its path (to hash it, then to
    encode it), it must be the file written, which a shared cache could not promise. Removed
    afterwards; its folder's sealed name lets `clear` take it if a crash leaves it."""
    for _ in range(100):
        folder = directory / f".spool-{temp_token(None)}.tmp"
        try:
            folder.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free name in {directory}")
    try:
        path = folder / SPOOL_FILE
        yield os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600), path
    finally:
        with contextlib.suppress(OSError):
            remove_spool(folder)


def remove_spool(folder: Path) -> None:
    """Delete a stream's copy's folder: the one file charseq writes in it, by its name, then
    the folder, which fails (OSError) if anything else is in it: never what is not charseq's."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SPOOL_FILE, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(folder)


def _write_small(path: Path, data: bytes) -> None:
    """A small file of the cache's, replacing whatever file or link is at `path` (never
    following it: a link planted in a shared cache must not make charseq write elsewhere)."""
    atomic_write(path, lambda f: f.write(data), durable=False, temp_tag=temp_token(path.name), follow_links=False)
