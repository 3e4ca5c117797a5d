"""The text cache's size cap: CHARSEQ_CACHE_SIZE read exactly, or the default. Eviction
past it is cache_listing's; every command that may write the cache reads the cap first, so
a bad value is refused before any text is encoded."""

from __future__ import annotations

import os
import re

from charseq.errors import UsageError

# The cap's default: a billion characters at a byte each (a text of up to 256 symbols), room for
# a few large corpora and every small one, and small beside any disk charseq trains on.
DEFAULT_CAP = 1 << 30
CAP_VARIABLE = "CHARSEQ_CACHE_SIZE"

# ASCII only (re.ASCII: no dotted I for an i, no Kelvin sign for a k), one space at most before the unit
_SIZE = re.compile(r"(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]*))? ?(?P<unit>(?:[kmgt]i?)?b?)", re.I | re.ASCII)
_SIZE_DIGITS = 24  # a whole part of more digits than this (past a yottabyte) is no size of a disk


def cache_cap() -> tuple[int | None, str | None]:
    """The most bytes the cache's entries may take (None: no cap), and CHARSEQ_CACHE_SIZE as
    it was given (None: unset, the default). A size is bytes, or a number with a unit: k, M,
    G, T are powers of 1000 (as `charseq cache` prints sizes), Ki, Mi, Gi, Ti powers of 1024,
    a B after either optional, one space before it allowed; it must come to whole bytes
    (1.5G does, half a byte does not: it is no cap of 0). 0 keeps only the entry just
    written, none sets no cap. Read in ASCII, exactly: the number as decimal digits, never a float."""
    text = os.environ.get(CAP_VARIABLE, "").strip()
    if not text:
        return DEFAULT_CAP, None
    if text.isascii() and text.lower() == "none":
        return None, text
    if not text.isascii() or (found := _SIZE.fullmatch(text)) is None or not (found["whole"] or found["fraction"]):
        raise UsageError(f"{CAP_VARIABLE}={text!r} is not a size: give one such as 500MB or 2GiB, 0 to keep only the "
                         "entry just written, or none for no cap")
    whole, fraction = found["whole"].lstrip("0"), (found["fraction"] or "").rstrip("0")
    if len(whole) > _SIZE_DIGITS:
        raise UsageError(f"{CAP_VARIABLE}={text!r} is too large to be a size; none sets no cap")
    unit = found["unit"].lower().removesuffix("b")
    scale = (1024 if unit.endswith("i") else 1000) ** ("kmgt".index(unit[0]) + 1) if unit else 1
    # whole.fraction times the unit, in integers; a fraction of over 40 digits (2**-40 has 40) is never whole bytes
    size, rest = divmod(int(whole + fraction or "0") * scale, 10 ** len(fraction)) if len(fraction) <= 40 else (0, 1)
    if rest:
        raise UsageError(f"{CAP_VARIABLE}={text!r} is not a whole number of bytes: give bytes, or a size that comes to "
                         "whole bytes (1.5G is 1,500,000,000), 0 to keep only the entry just written, or none for no "
                         "cap")
    return size, text
