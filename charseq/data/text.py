"""Text files as a corpus: encoded once, in chunks, into a memory-mapped array on disk.

The cache is keyed by the SHA-256 of the files' content (and the encoding), so an edited
file is encoded again and an unchanged one, even renamed, is not. A second run maps the
cached ids and starts at once; a small index keyed by path, size and modification time
spares it from hashing the content again. Memory stays at a few chunks, whatever the
size of the text: the ids are read from the page cache as training needs them.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import hashlib
import json
import os
import shutil
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import AnyStr, BinaryIO

import numpy as np

from charseq.data.cache import Entry, cache_dir, index_key, indexed_key, load_entry, save_entry, spool_file
from charseq.data.cache_listing import make_room
from charseq.data.corpus import Corpus
from charseq.errors import CharseqError, CharseqWarning, UsageError, setting
from charseq.files import kind_of
from charseq.data.vocab import Vocabulary

CHUNK_BYTES = 1 << 20
_COUNT_CHUNK = 1 << 16  # bincount and indexing widen uint8 indices to 8 bytes each
_KEY_FORMAT = 1  # in every content key, so that a run's recorded fingerprint stays valid


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


_SNIFF_BYTES = 4096
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32 (little-endian)"),  # before UTF-16's, which begins it
         (codecs.BOM_UTF32_BE, "utf-32", "UTF-32 (big-endian)"),
         (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 (little-endian)"),
         (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 (big-endian)"))


def sniff_wide_encoding(first_bytes: bytes) -> str | None:
    """The --encoding that reads a file opening with `first_bytes`, when they look like
    UTF-16 or UTF-32 text ("utf-16", "utf-16-le", "utf-32-be", ...); None otherwise. Such
    text read as UTF-8 fails on its byte-order mark, or, without one, quietly decodes to
    a NUL between the characters: either way the user needs the encoding named."""
    found = _sniff(first_bytes)
    return found[0] if found else None


def wide_encoding_hint(first_bytes: bytes) -> str | None:
    """'looks like UTF-16 (little-endian) text; use --encoding utf-16', or None: for messages."""
    found = _sniff(first_bytes)
    return f"looks like {found[1]} text; use {setting('encoding', found[0])}" if found else None


def _sniff(first_bytes: bytes) -> tuple[str, str] | None:
    """(encoding, description) by a byte-order mark, else by where the NUL bytes fall: the
    high bytes of ASCII characters, every second byte (UTF-16) or three of every four
    (UTF-32). Without a mark the byte order must be named (utf-16-le); with one, utf-16
    reads either, and drops the mark."""
    for bom, encoding, description in _BOMS:
        if first_bytes.startswith(bom):
            return encoding, description
    head = first_bytes[:_SNIFF_BYTES]
    if len(head) < 4:
        return None
    zero = (np.frombuffer(head[: len(head) // 4 * 4], dtype=np.uint8) == 0).reshape(-1, 4).mean(axis=0)
    if zero[1:].min() > 0.9 and zero[0] < 0.1:
        return "utf-32-le", "UTF-32 (little-endian)"
    if zero[:3].min() > 0.9 and zero[3] < 0.1:
        return "utf-32-be", "UTF-32 (big-endian)"
    even, odd = (zero[0] + zero[2]) / 2, (zero[1] + zero[3]) / 2
    if odd > 0.5 and even < 0.1:
        return "utf-16-le", "UTF-16 (little-endian)"
    if even > 0.5 and odd < 0.1:
        return "utf-16-be", "UTF-16 (big-endian)"
    return None


# -- text that can be read only once ----------------------------------------------------

STDIN_NAMES = ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")


def is_stream(spec: str) -> bool:
    """Whether `spec` names standard input or a pipe (a FIFO, `<(command)`): text that can
    be read only once, where charseq reads a file twice (to hash it, then to encode it)."""
    if spec in STDIN_NAMES:
        return True
    try:
        return stat.S_ISFIFO(os.stat(os.path.expanduser(spec)).st_mode)
    except (OSError, ValueError):
        return False


def load_stream_corpus(spec: str, encoding: str = "utf-8", exact: bool = False) -> Corpus:
    """Standard input (`-`, /dev/stdin) or a pipe as a corpus: copied once into the cache
    directory, then read as a file is (the same text piped again maps the same cache entry)
    and the copy removed. It has no file a run could find again: ``stream`` is set, so a
    run records no source, and resuming it needs the text given again."""
    encoding = check_encoding(encoding)
    stdin = spec in STDIN_NAMES
    shown_as = "standard input" if stdin else spec
    directory = cache_dir()
    with _spooled(spec, directory) as copy:
        if copy.stat().st_size == 0:
            raise UsageError(f"corpus text:{spec} is empty: nothing came from {shown_as}")
        corpus = load_text_corpus("stdin" if stdin else Path(spec).name, [copy], encoding, exact, shown_as=shown_as)
    corpus.files, corpus.stream = (), True
    return corpus


@contextlib.contextmanager
def _spooled(spec: str, directory: Path) -> Iterator[Path]:
    """The stream's bytes in a new file in `directory`, removed afterwards."""
    with spool_file(directory) as (fd, path):
        with os.fdopen(fd, "wb") as out, _open_stream(spec) as source:
            try:
                shutil.copyfileobj(source, out, CHUNK_BYTES)
            except OSError as exc:
                what = "standard input" if spec in STDIN_NAMES else repr(spec)
                raise CharseqError(f"cannot copy {what} into the cache ({directory}): {exc.strerror or exc}") \
                    from None
        yield path


def _open_stream(spec: str) -> contextlib.AbstractContextManager[BinaryIO]:
    """The stream's bytes: charseq's standard input (left open), or the pipe at `spec`."""
    if spec in STDIN_NAMES:
        stdin = getattr(sys.stdin, "buffer", None) if sys.stdin is not None else None
        if stdin is None or getattr(stdin, "closed", False):
            raise UsageError(f"corpus text:{spec} reads standard input, which is closed; pipe the text in, or give a "
                             "file: text:PATH")
        if sys.stdin.isatty():
            raise UsageError(f"corpus text:{spec} reads standard input, which is a terminal; pipe the text in, or "
                             "give a file: text:PATH")
        return contextlib.nullcontext(stdin)
    try:
        return open(os.path.expanduser(spec), "rb")
    except OSError as exc:
        raise UsageError(f"cannot read corpus {spec!r}: {exc.strerror or exc}") from None


def load_text_corpus(name: str, files: list[Path], encoding: str = "utf-8", exact: bool = False, *,
                     skip_unreadable: bool = False, shown_as: str | None = None) -> Corpus:
    """The concatenated text of `files` as a corpus whose ids are memory-mapped from the cache.

    Unless `exact`, each file's ``\\r\\n`` is read as ``\\n`` and its leading byte-order mark
    is dropped: the same text saved on Windows and elsewhere trains alike. With
    `skip_unreadable` (files a directory or a glob found, not named), a file that is not
    text in the encoding is left out with a warning naming it, rather than ending the run.
    `shown_as` names a stream's copy (one file) in messages and in the cache's records.
    """
    encoding = check_encoding(encoding)  # by the codec's own name: utf8 and UTF-8 share a cache entry
    if sum(f.stat().st_size for f in files) == 0:
        raise UsageError(f"corpus {name!r} is empty" + (f" ({files[0]})" if len(files) == 1 else ""))
    directory = cache_dir()
    label = _read_as(encoding, exact)
    # A stream's copy is a new file each time: its content is hashed, never looked up by path.
    key = _hash_files(files, label) if shown_as else _content_key(files, label, directory)
    shown = [shown_as] if shown_as else [str(f) for f in files]
    cached = load_entry(directory, key)
    if cached is None:
        sources = [shown_as] if shown_as else [str(f.resolve()) for f in files]
        cached = _encode_to_cache(files, encoding, directory, key, exact=exact, skip_unreadable=skip_unreadable,
                                  name=name, shown=shown, sources=sources)
        make_room(directory, keep=key)
    vocab, ids, skipped = cached.vocab, cached.ids, cached.skipped
    for index, why in skipped[:_NAMED_SKIPS]:
        warnings.warn(f"skipped {shown[index]!r}: {why}", CharseqWarning, stacklevel=2)
    if len(skipped) > _NAMED_SKIPS:
        warnings.warn(f"skipped {len(skipped) - _NAMED_SKIPS} more files of corpus {name!r} that are not {encoding} "
                      "text", CharseqWarning, stacklevel=2)
    return Corpus(name, vocab, ids, files=tuple(str(f.resolve()) for f in files), content_hash=key)


_NAMED_SKIPS = 10  # a directory of a thousand pictures gets ten lines, then a count


def _read_as(encoding: str, exact: bool) -> str:
    """How the text is read, as its cache key records it: the encoding, and whether line
    endings and a leading byte-order mark are normalised. A byte-exact reading is labelled
    as every reading was before the choice existed, so its keys (a run's fingerprint) stay."""
    return encoding if exact else f"{encoding}+newlines"


def _content_key(files: list[Path], encoding: str, directory: Path) -> str:
    """The SHA-256 of the files' content and how they are read (`encoding`: _read_as). An
    index keyed by each file's path, size, times, inode and device spares hashing an
    unchanged file again; the change time is set by the kernel on every write, so an edit
    that keeps the size and the modification time is still noticed."""
    stats = []
    for f in files:
        info = f.stat()
        stats.append((str(f.resolve()), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev))
    index = hashlib.sha256(json.dumps([encoding, stats]).encode()).hexdigest()
    key = indexed_key(directory, index)
    if key is None:
        key = _hash_files(files, encoding)
        index_key(directory, index, key)
    return key


def _hash_files(files: list[Path], encoding: str) -> str:
    """The content key: what _Hashed computes while the files are encoded."""
    hashed = _Hashed(encoding)
    for f in files:
        with f.open("rb") as stream:
            _hash_rest(stream, hashed, start=True)
    return hashed.digest()


def _hash_rest(stream: BinaryIO, hashed: _Hashed, start: bool = False) -> None:
    """Hash what is left of an open file (all of it, its size first, when `start`)."""
    if start:
        hashed.file(os.fstat(stream.fileno()).st_size)
    while chunk := stream.read(CHUNK_BYTES):
        hashed.update(chunk)


class _NotText(Exception):
    """A file that does not decode: `detail` completes "is not ENCODING text"; `advice`, the
    encoding to use, when its bytes say which."""

    def __init__(self, detail: str, advice: str | None = None):
        super().__init__(detail)
        self.detail, self.advice = detail, advice


# One pass over the files in order (hash, decode, encode, spool), kept whole so that its
# order of checks reads as the order of the bytes; its parts are named helpers.
def _encode_to_cache(files: list[Path], encoding: str, directory: Path, key: str, *, exact: bool = False,
                     skip_unreadable: bool = False, name: str = "text", shown: list[str] | None = None,
                     sources: list[str] | None = None) -> Entry:
    # Each pass hashes the bytes it reads: a file edited between the passes (or since its
    # key was computed) would otherwise put one text's ids under another text's key.
    # Pass 1: the vocabulary and the length, in one streaming pass; a file's counts join the
    # totals only once all of it has decoded, so that a file skipped part way adds nothing.
    shown = shown or [str(f) for f in files]
    ascii_counts = np.zeros(128, dtype=np.int64)
    others: set[str] = set()
    length = 0
    skipped: list[tuple[int, str]] = []
    first = _Hashed(_read_as(encoding, exact))
    for index, path in enumerate(files):
        chars: set[str]
        counts, chars, size = np.zeros(128, dtype=np.int64), set(), 0
        try:
            for piece in _file_pieces(path, encoding, exact, first):
                if isinstance(piece, str):
                    chars.update(piece)
                else:
                    for start in range(0, len(piece), _COUNT_CHUNK):
                        counts += np.bincount(piece[start : start + _COUNT_CHUNK], minlength=128)
                size += len(piece)
        except _NotText as exc:
            if not skip_unreadable:
                raise UsageError(f"{shown[index]!r} is not {encoding} text{exc.detail}; "
                                 f"{exc.advice or 'try ' + setting('encoding')}") from None
            advice = f"; {exc.advice}" if exc.advice else ""
            skipped.append((index, f"it is not {encoding} text{exc.detail}{advice}"))
            continue
        ascii_counts += counts
        others |= chars
        length += size
    if length == 0:
        if skipped and len(skipped) == len(files):
            raise UsageError(f"none of the {len(files)} files of corpus {name!r} is {encoding} text (the first: "
                             f"{shown[skipped[0][0]]!r}, {skipped[0][1]}); try {setting('encoding')}")
        raise UsageError(f"corpus {name!r} is empty" + (f" once {len(skipped)} files that are not {encoding} text "
                                                        "are left out" if skipped else ""))
    symbols = {chr(code) for code in np.flatnonzero(ascii_counts)} | others
    vocab = Vocabulary(sorted(symbols))
    ascii_lookup = np.zeros(128, dtype=vocab.dtype)
    for code in np.flatnonzero(ascii_counts):
        ascii_lookup[code] = vocab.symbols.index(chr(code))

    # Pass 2: the ids, appended chunk by chunk to a file that then replaces the cache entry
    # whole. Plain writes, not a writable memmap: mapped pages would count as the process's.
    second = _Hashed(_read_as(encoding, exact))
    left_out = {index for index, _ in skipped}

    def ids() -> Iterator[np.ndarray]:
        try:
            for index, path in enumerate(files):
                if index in left_out:
                    with path.open("rb") as stream:
                        _hash_rest(stream, second, start=True)
                    continue
                for piece in _file_pieces(path, encoding, exact, second):
                    if isinstance(piece, str):
                        yield vocab.encode(piece)
                    else:
                        for start in range(0, len(piece), _COUNT_CHUNK):
                            yield np.take(ascii_lookup, piece[start : start + _COUNT_CHUNK])
            changed = not first.digest() == second.digest() == key
        except _NotText:  # it decoded in the first pass
            changed = True
        if changed:  # raised before the ids take the key's place: nothing is left behind
            raise UsageError("the text changed while charseq was reading it; run the command again once it is "
                             "written")

    record = {"symbols": list(vocab.symbols), "dtype": str(vocab.dtype), "length": length, "encoding": encoding,
              "exact": exact, "sources": sources or [str(f.resolve()) for f in files],
              "skipped": skipped}  # what `charseq cache` shows, and the files every load names as skipped
    return save_entry(directory, key, ids(), record)


class _Hashed:
    """The content key of the bytes read, computed as _content_key computes it."""

    def __init__(self, encoding: str):
        self._digest = hashlib.sha256(f"charseq-text-{_KEY_FORMAT}:{encoding}".encode())

    def file(self, size: int) -> None:
        self._digest.update(f"\0{size}\0".encode())

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)

    def digest(self) -> str:
        return self._digest.hexdigest()


_ASCII_FAST = ("utf-8", "ascii", "latin-1", "iso8859-1", "cp1252")


def _file_pieces(path: Path, encoding: str, exact: bool, hashed: _Hashed) -> Iterator[str | np.ndarray]:
    """One file's text, a chunk at a time: uint8 code points for an all-ASCII chunk of an
    ASCII-compatible encoding (no str is made), otherwise decoded str. Unless `exact`,
    ``\\r\\n`` becomes ``\\n`` and a leading byte-order mark is dropped. A file that does not
    decode raises _NotText once all of it is hashed (so that it can be skipped)."""
    name = codecs.lookup(encoding).name
    ascii_fast, sniff = name in _ASCII_FAST, not name.startswith(("utf-16", "utf-32"))
    decoder = codecs.getincrementaldecoder(encoding)()
    held_cr = False  # a \r that ended the last chunk: whether \n follows is in the next
    started = False  # whether any character came yet: a byte-order mark counts only first
    with path.open("rb") as stream:
        hashed.file(os.fstat(stream.fileno()).st_size)
        offset = 0
        while True:
            chunk = stream.read(CHUNK_BYTES)
            hashed.update(chunk)
            last = len(chunk) < CHUNK_BYTES
            if offset == 0 and sniff:
                wide = _sniff(chunk)
                if wide:
                    _hash_rest(stream, hashed)
                    raise _NotText(f": it looks like {wide[1]} text", f"use {setting('encoding', wide[0])}")
            pending = decoder.getstate()[0]
            piece: str | bytes
            if ascii_fast and not pending and chunk.isascii():
                piece = chunk
            else:
                try:
                    piece = decoder.decode(chunk, final=last)
                except UnicodeDecodeError as exc:
                    _hash_rest(stream, hashed)
                    raise _NotText(f": bad byte at offset {offset - len(pending) + exc.start}") from None
                except UnicodeError as exc:  # a codec's own complaint (utf-16 without a byte-order mark)
                    _hash_rest(stream, hashed)
                    raise _NotText(f" ({exc})") from None
                if not started and piece and not exact:
                    piece = piece.removeprefix("\ufeff")
                    started = True
            started = started or bool(piece)
            if not exact:
                piece, held_cr = _newlines(piece, held_cr, last)
            if piece:
                yield np.frombuffer(piece, dtype=np.uint8) if isinstance(piece, bytes) else piece
            offset += len(chunk)
            if last:
                break


def _newlines(piece: str | bytes, held_cr: bool, last: bool) -> tuple[str | bytes, bool]:
    """`piece` with each ``\\r\\n`` as ``\\n``, after a ``\\r`` held back from the piece before;
    and whether a ``\\r`` that ends it is held back in turn (the next piece may begin with
    ``\\n``: a chunk boundary can fall between the two)."""
    if isinstance(piece, str):
        return _joined_newlines(piece, "\r", "\n", held_cr, last)
    return _joined_newlines(piece, b"\r", b"\n", held_cr, last)


def _joined_newlines(piece: AnyStr, cr: AnyStr, lf: AnyStr, held_cr: bool, last: bool) -> tuple[AnyStr, bool]:
    """_newlines for text or bytes, with that type's ``\\r`` and ``\\n``."""
    if held_cr:
        piece = cr + piece
    hold = not last and piece.endswith(cr)
    if hold:
        piece = piece[:-1]
    return piece.replace(cr + lf, lf), hold
