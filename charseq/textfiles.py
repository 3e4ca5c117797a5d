"""Text files as a corpus: encoded once, in chunks, into a memory-mapped array on disk.

The cache is keyed by the SHA-256 of the files' content (and the encoding), so an edited
file is encoded again and an unchanged one, even renamed, is not. A second run maps the
cached ids and starts at once; a small index keyed by path, size and modification time
spares it from hashing the content again. Memory stays at a few chunks, whatever the
size of the text: the ids are read from the page cache as training needs them.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from charseq.corpus import Corpus
from charseq.errors import CharseqWarning, UsageError
from charseq.files import atomic_write, kind_of
from charseq.vocab import Vocabulary

CHUNK_BYTES = 1 << 20
_COUNT_CHUNK = 1 << 16  # bincount and indexing widen uint8 indices to 8 bytes each
_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """$CHARSEQ_CACHE, else $XDG_CACHE_HOME/charseq, else ~/.cache/charseq: made if missing.

    A CHARSEQ_CACHE that cannot be used is an error naming it; when the default place
    cannot be used (a read-only home), a directory under the system's temporary one is.
    """
    chosen = os.environ.get("CHARSEQ_CACHE")
    if chosen:
        problem = _unusable(Path(chosen))
        if problem:
            raise UsageError(f"CHARSEQ_CACHE={chosen!r} cannot hold charseq's cache ({problem}); point it at a "
                             "writable directory, or unset it")
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    default = Path(base) / "charseq"
    problem = _unusable(default)
    if not problem:
        return default
    fallback = Path(tempfile.gettempdir()) / f"charseq-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    if _unusable(fallback, private=True):
        raise UsageError(f"no usable cache directory: {str(default)!r} ({problem}); set CHARSEQ_CACHE to a writable "
                         "directory")
    warnings.warn(f"the cache directory {str(default)!r} cannot be used ({problem}); using {str(fallback)!r} "
                  "(set CHARSEQ_CACHE to choose)", CharseqWarning, stacklevel=2)
    return fallback


def _unusable(directory: Path, private: bool = False) -> str | None:
    """Why `directory` cannot hold the cache, or None when it can (made if missing). In a
    shared place (the temporary directory) it must be the user's own, writable by nobody
    else: another user's directory there could hand charseq any text under any key."""
    try:
        directory.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private:
            info = os.lstat(directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                return "it belongs to another user, or others may write it"
        with tempfile.TemporaryFile(dir=directory):
            pass
    except FileExistsError:
        return "it is not a directory"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def resolve_files(spec: str) -> list[Path]:
    """A file, a directory (its files, recursively, in sorted order, hidden ones left out)
    or a glob pattern (its files in sorted order). A path that exists is taken as it is,
    glob characters and all; a file reached twice (a symlink, a ``**`` loop) is read once."""
    try:
        return _resolve(spec)
    except OSError as exc:  # a directory that cannot be listed, a file that cannot be read
        where = f" ({exc.filename})" if exc.filename else ""
        raise UsageError(f"cannot read corpus {spec!r}{where}: {exc.strerror or exc}") from None


def _resolve(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise UsageError(f"directory {spec!r} has no files")
        return _once_each(files)
    if path.exists():
        kind = kind_of(path)
        if kind is not None:  # a pipe cannot be read twice (to hash it, then to encode it)
            raise UsageError(f"corpus path {spec!r} is {kind}, not a file; save the text to a file first")
        return [path]
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
        if not files:
            raise UsageError(f"no files match {spec!r}")
        return _once_each(files)
    raise UsageError(f"corpus path {spec!r} does not exist")


def glob_roots(pattern: str, limit: int = 10_000) -> tuple[str, ...]:
    """The places a glob pattern reads: itself, and for a `**` pattern every directory it
    reaches (symlinks followed, each once) joined to its last part, so that an output in a
    directory the glob reaches through a link is seen to lie in the corpus."""
    roots = [pattern]
    parts = Path(pattern).parts
    if "**" not in parts:
        return tuple(roots)
    base = os.path.join(*parts[: parts.index("**")])
    seen: set[tuple[int, int]] = set()
    for directory, subdirectories, _ in os.walk(base, followlinks=True):
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            subdirectories[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        roots.append(os.path.join(os.path.realpath(directory), parts[-1]))
        if len(roots) > limit:
            break
    return tuple(roots)


def _once_each(files: list[Path]) -> list[Path]:
    """The files in order, each (by device and inode) once."""
    seen, kept = set(), []
    for f in files:
        identity = (f.stat().st_dev, f.stat().st_ino)
        if identity not in seen:
            seen.add(identity)
            kept.append(f)
    return kept


def check_encoding(encoding: str) -> str:
    """The codec's name; refused unless it turns bytes into text (base64 and rot13 do not)."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        raise UsageError(f"unknown encoding {encoding!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"{encoding!r} is not a text encoding (it does not decode bytes to text)")
    return info.name


def load_text_corpus(name: str, files: list[Path], encoding: str = "utf-8") -> Corpus:
    """The concatenated text of `files` as a corpus whose ids are memory-mapped from the cache."""
    encoding = check_encoding(encoding)  # by the codec's own name: utf8 and UTF-8 share a cache entry
    if sum(f.stat().st_size for f in files) == 0:
        raise UsageError(f"corpus {name!r} is empty" + (f" ({files[0]})" if len(files) == 1 else ""))
    directory = cache_dir()
    key = _content_key(files, encoding, directory)
    cached = _read_cache(directory, key)
    if cached is None:
        cached = _encode_to_cache(files, encoding, directory, key)
    vocab, ids = cached
    return Corpus(name, vocab, ids, files=tuple(str(f.resolve()) for f in files), content_hash=key)


def _content_key(files: list[Path], encoding: str, directory: Path) -> str:
    """The SHA-256 of the files' content and the encoding. An index keyed by each file's
    path, size, times, inode and device spares hashing an unchanged file again; the change
    time is set by the kernel on every write, so an edit that keeps the size and the
    modification time is still noticed."""
    stats = []
    for f in files:
        info = f.stat()
        stats.append((str(f.resolve()), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev))
    index = directory / "index" / hashlib.sha256(json.dumps([encoding, stats]).encode()).hexdigest()
    try:
        return index.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256(f"charseq-text-{_CACHE_FORMAT}:{encoding}".encode())
    for f in files:
        digest.update(f"\0{f.stat().st_size}\0".encode())
        with f.open("rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
    key = digest.hexdigest()
    _write_atomically(index, key.encode())
    return key


def _read_cache(directory: Path, key: str) -> tuple[Vocabulary, np.ndarray] | None:
    try:
        meta = json.loads((directory / f"{key}.json").read_text(encoding="utf-8"))
        vocab = Vocabulary(meta["symbols"])
        dtype, length = np.dtype(meta["dtype"]), int(meta["length"])
        ids_path = directory / f"{key}.ids"
        if dtype != vocab.dtype or ids_path.stat().st_size != length * dtype.itemsize:
            return None  # damaged: encode again
        return vocab, np.memmap(ids_path, dtype=dtype, mode="r", shape=(length,))
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None


def _encode_to_cache(files: list[Path], encoding: str, directory: Path, key: str) -> tuple[Vocabulary, np.ndarray]:
    # Each pass hashes the bytes it reads: a file edited between the passes (or since its
    # key was computed) would otherwise put one text's ids under another text's key.
    # Pass 1: the vocabulary and the length, in one streaming pass.
    ascii_counts = np.zeros(128, dtype=np.int64)
    others: set[str] = set()
    length = 0
    first = _Hashed(encoding)
    for piece in _pieces(files, encoding, first):
        if isinstance(piece, str):
            others.update(piece)
        else:
            for start in range(0, len(piece), _COUNT_CHUNK):
                ascii_counts += np.bincount(piece[start : start + _COUNT_CHUNK], minlength=128)
        length += len(piece)
    symbols = {chr(code) for code in np.flatnonzero(ascii_counts)} | others
    vocab = Vocabulary(sorted(symbols))
    ascii_lookup = np.zeros(128, dtype=vocab.dtype)
    for code in np.flatnonzero(ascii_counts):
        ascii_lookup[code] = vocab.symbols.index(chr(code))

    # Pass 2: the ids, appended chunk by chunk to a file that then replaces the cache entry
    # whole. Plain writes, not a writable memmap: mapped pages would count as the process's.
    second = _Hashed(encoding)

    def write_ids(out) -> None:
        for piece in _pieces(files, encoding, second):
            if isinstance(piece, str):
                vocab.encode(piece).tofile(out)
            else:
                for start in range(0, len(piece), _COUNT_CHUNK):
                    np.take(ascii_lookup, piece[start : start + _COUNT_CHUNK]).tofile(out)

    atomic_write(directory / f"{key}.ids", write_ids, durable=False)
    if not first.digest() == second.digest() == key:
        (directory / f"{key}.ids").unlink(missing_ok=True)
        raise UsageError("the text changed while charseq was reading it; run the command again once it is written")
    meta = {"format": _CACHE_FORMAT, "symbols": list(vocab.symbols), "dtype": str(vocab.dtype), "length": length}
    _write_atomically(directory / f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    cached = _read_cache(directory, key)
    assert cached is not None
    return cached


class _Hashed:
    """The content key of the bytes read, computed as _content_key computes it."""

    def __init__(self, encoding: str):
        self._digest = hashlib.sha256(f"charseq-text-{_CACHE_FORMAT}:{encoding}".encode())

    def file(self, size: int) -> None:
        self._digest.update(f"\0{size}\0".encode())

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)

    def digest(self) -> str:
        return self._digest.hexdigest()


def _pieces(files: list[Path], encoding: str, hashed: _Hashed) -> Iterator[str | np.ndarray]:
    """The text, a chunk at a time: uint8 code points for an all-ASCII chunk of an
    ASCII-compatible encoding (no str is made), otherwise decoded str."""
    ascii_fast = codecs.lookup(encoding).name in ("utf-8", "ascii", "latin-1", "iso8859-1", "cp1252")
    for path in files:
        decoder = codecs.getincrementaldecoder(encoding)()
        with path.open("rb") as stream:
            hashed.file(os.fstat(stream.fileno()).st_size)
            offset = 0
            while True:
                chunk = stream.read(CHUNK_BYTES)
                hashed.update(chunk)
                last = len(chunk) < CHUNK_BYTES
                pending = decoder.getstate()[0]
                if ascii_fast and not pending and chunk.isascii():
                    if chunk:
                        yield np.frombuffer(chunk, dtype=np.uint8)
                else:
                    try:
                        text = decoder.decode(chunk, final=last)
                    except UnicodeDecodeError as exc:
                        raise UsageError(
                            f"{str(path)!r} is not {encoding} text: bad byte at offset "
                            f"{offset - len(pending) + exc.start}; try --encoding"
                        ) from None
                    except UnicodeError as exc:  # a codec's own complaint (utf-16 without a byte-order mark)
                        raise UsageError(f"{str(path)!r} is not {encoding} text ({exc}); try --encoding") from None
                    if text:
                        yield text
                offset += len(chunk)
                if last:
                    break


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(data), durable=False)
