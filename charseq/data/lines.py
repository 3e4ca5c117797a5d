"""Files of one item per line (names, words, titles), read as a corpus of items.

Line endings may be ``\\n`` or ``\\r\\n``, a leading byte-order mark is dropped, and blank
lines are left out: what a user's list of names holds, whatever wrote it. A line is an
item to learn whole, from a fresh state: a line longer than MAX_ITEM_CHARS means the file
is running text, which ``text:PATH`` reads.
"""

from __future__ import annotations

from pathlib import Path

import warnings

from charseq.data.cache_cap import cache_cap
from charseq.data.corpus import Corpus
from charseq.errors import CharseqWarning, UsageError, setting
from charseq.files import first_line
from charseq.data.items import END
from charseq.data.text import check_encoding, wide_encoding_hint

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
    except UnicodeError as exc:  # a codec's own complaint, which may run over lines
        raise UsageError(f"{str(path)!r} is not {encoding} text ({first_line(exc)}); try {setting('encoding')}") \
            from None
    wide = None if encoding.startswith(("utf-16", "utf-32")) else wide_encoding_hint(data[:4096])
    if wide:  # what text:PATH refuses too; any other character, NUL included, is a symbol
        raise UsageError(f"{str(path)!r} is not {encoding} text: it {wide}")
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
    return f"; it {hint}" if hint else f"; try {setting('encoding')}"


def load_lines_corpus(name: str, files: list[Path], encoding: str = "utf-8", skip_unreadable: bool = False) -> Corpus:
    """The lines of `files`, in order, as a corpus of items. With `skip_unreadable` (files a
    directory or a glob found, not named), a file that is not text is skipped with a warning.
    The cache is not used, but its cap is checked as text files check it: a setting refused
    there is refused wherever files are read, never taken silently."""
    encoding = check_encoding(encoding)
    cache_cap()
    items: list[str] = []
    read = []
    for path in files:
        try:
            items += read_items(path, encoding)
            read.append(path)
        except UsageError as exc:
            if not skip_unreadable or str(exc).startswith("line "):
                raise
            warnings.warn(f"skipped {str(path)!r}: {str(exc).split(': ', 1)[-1]}", CharseqWarning, stacklevel=2)
    if not read:
        raise UsageError(f"corpus {name!r} has no file of {encoding} text")
    files = read
    if not items:
        raise UsageError(f"corpus {name!r} has no lines" + (f" ({files[0]})" if len(files) == 1 else ""))
    return Corpus.from_items(name, items, END, files=tuple(str(f.resolve()) for f in files), defaults=LINES_DEFAULTS)


# Suggested for short items, measured on makemore's names.txt (see the README): two layers of
# 192 GRUs for 11 epochs fit in two minutes on two cores. Of H=128/192/256, one layer or two,
# GRU or LSTM, dropout 0.05-0.2, lr 2e-3 to 6e-3 and input-lr-scale 20 or 80 in that budget,
# this ended lowest (1.902 and 1.907 for seeds 0 and 1); the other settings are the text
# defaults.
LINES_DEFAULTS: dict[str, object] = {"model": "gru:layers=2", "hidden_size": 192, "batch_size": 64, "lr": 3e-3,
                                     "input_lr_scale": 20.0, "epochs": 11}
