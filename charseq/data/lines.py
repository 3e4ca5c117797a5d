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


# Suggested for short items, chosen by charseq's own sweep of two-minute runs on makemore's
# names.txt (docs/explanation/defaults.md; benchmarks/sweeps/names-2m.txt): two layers of 256
# GRUs, small batches, strong dropout, the input weights' steps only 5.4 times the rest's;
# 9 epochs took 1m35s on a 2-core AMD EPYC, to 1.894 nats/char. The rest are the text defaults.
LINES_DEFAULTS: dict[str, object] = {"model": "gru:layers=2", "hidden_size": 256, "batch_size": 32, "lr": 2.3e-3,
                                     "dropout": 0.23, "input_lr_scale": 5.4, "warmup": 100, "epochs": 9}
