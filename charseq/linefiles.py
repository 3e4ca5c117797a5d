"""Files of one item per line (names, words, titles), read as a corpus of items.

Line endings may be ``\\n`` or ``\\r\\n``, a leading byte-order mark is dropped, and blank
lines are left out: what a user's list of names holds, whatever wrote it. A line is an
item to learn whole, from a fresh state: a line longer than MAX_ITEM_CHARS means the file
is running text, which ``text:PATH`` reads.
"""

from __future__ import annotations

from pathlib import Path

from charseq.corpus import Corpus
from charseq.errors import UsageError
from charseq.items import END
from charseq.textfiles import wide_encoding_hint

MAX_ITEM_CHARS = 4096
BOM = "\ufeff"


def read_items(path: Path, encoding: str = "utf-8") -> list[str]:
    """The non-blank lines of one file, without their line endings."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{str(path)!r} is not {encoding} text: bad byte at offset {exc.start}{_wide_hint(data)}") \
            from None
    except UnicodeError as exc:
        raise UsageError(f"{str(path)!r} is not {encoding} text ({exc}); try --encoding") from None
    if "\0" in text:
        raise UsageError(f"{str(path)!r} holds NUL characters: it is not {encoding} text{_wide_hint(data)}")
    items = []
    for number, line in enumerate(text.removeprefix(BOM).split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if len(line) > MAX_ITEM_CHARS:
            raise UsageError(f"line {number:,} of {str(path)!r} has {len(line):,} characters; the lines corpus learns "
                             f"short items (at most {MAX_ITEM_CHARS:,}): use text:PATH for running text")
        items.append(line)
    return items


def _wide_hint(data: bytes) -> str:
    """'; it looks like UTF-16 ... text; use --encoding X' where the bytes say so, else '; try --encoding'."""
    hint = wide_encoding_hint(data[:4096])
    return f"; it {hint}" if hint else "; try --encoding"


def load_lines_corpus(name: str, files: list[Path], encoding: str = "utf-8") -> Corpus:
    """The lines of `files`, in order, as a corpus of items."""
    items = [item for path in files for item in read_items(path, encoding)]
    if not items:
        raise UsageError(f"corpus {name!r} has no lines" + (f" ({files[0]})" if len(files) == 1 else ""))
    return Corpus.from_items(name, items, END, files=tuple(str(f.resolve()) for f in files), defaults=LINES_DEFAULTS)


# Suggested for short items, measured on names.txt (see the README).
LINES_DEFAULTS: dict[str, object] = {}
