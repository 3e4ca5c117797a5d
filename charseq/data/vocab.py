"""The symbols a model reads and writes, and their integer ids."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from charseq.errors import UsageError, counted


_ENCODE_CHUNK = 1 << 20


class Vocabulary:
    """An ordered set of single characters; a symbol's id is its position."""

    def __init__(self, symbols: Iterable[str]):
        symbols = tuple(symbols)
        if not symbols:
            raise UsageError("a vocabulary needs at least one symbol")
        for s in symbols:
            if not isinstance(s, str) or len(s) != 1:
                raise UsageError(f"vocabulary symbols must be single characters, got {s!r}")
            if 0xD800 <= ord(s) <= 0xDFFF:  # half of a UTF-16 pair: no text can hold it alone
                raise UsageError(f"vocabulary symbols must be characters, got the lone surrogate {s!r}")
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1})
            raise UsageError(f"vocabulary has duplicate symbols: {show_characters(dupes)}")
        self.symbols = symbols
        # A lookup table indexed by code point turns encoding into one gather.
        codes = np.array([ord(s) for s in symbols], dtype=np.int64)
        self._lookup = np.full(int(codes.max()) + 2, -1, dtype=np.int32)
        self._lookup[codes] = np.arange(len(symbols), dtype=np.int32)
        # Decoding gathers code points and reads them as UTF-32: exact for every symbol, NUL
        # included (a numpy string array would drop it: it pads with NUL).
        self._codes = codes.astype("<u4")

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The sorted unique characters of `text`."""
        if not text:
            raise UsageError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def dtype(self) -> np.dtype:
        """The narrowest integer type that holds every id: the corpus is stored in it."""
        return np.dtype(np.uint8 if len(self) <= 256 else np.int32)

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of `text`, shape (len(text),).

        Encoded a chunk at a time, so the temporary code points stay small for long texts.
        """
        out = np.empty(len(text), dtype=self.dtype)
        for start in range(0, len(text), _ENCODE_CHUNK):
            chunk = text[start : start + _ENCODE_CHUNK]
            codes = np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)
            ids = self._lookup[np.minimum(codes, len(self._lookup) - 1)]
            if (ids < 0).any():
                unknown = self.unknown(text)
                raise UsageError(f"{counted(len(unknown), 'character')} not in the vocabulary: {show_characters(unknown)}")
            out[start : start + len(chunk)] = ids
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of `ids`, one character per id."""
        ids = np.asarray(ids, dtype=np.intp)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise UsageError(f"ids must lie in 0..{len(self) - 1}")
        return self._codes[ids.ravel()].tobytes().decode("utf-32-le")

    def one_hot(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 one-hot rows, shape ids.shape + (len(self),); for users, not the hot path."""
        ids = np.asarray(ids, dtype=np.intp)
        out = np.zeros(ids.shape + (len(self),), dtype=np.float32)
        np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
        return out

    def to_json(self) -> str:
        return json.dumps({"symbols": list(self.symbols)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str) -> Vocabulary:
        try:
            symbols = json.loads(data)["symbols"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"not a vocabulary in JSON: {exc}") from None
        return cls(symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def unknown(self, chars: Iterable[str]) -> list[str]:
        """The distinct characters of `chars` that are not symbols here, sorted."""
        return sorted(set(chars) - set(self.symbols))

    def unused(self, candidates: Iterable[str]) -> str:
        """The first of `candidates` that is not a symbol here ("" when it holds them all):
        a mark that cannot be taken for a character of the text."""
        return next((c for c in candidates if c not in self.symbols), "")

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbols

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def __repr__(self) -> str:
        return f"Vocabulary({''.join(self.symbols)!r})"


def show_characters(chars: Iterable[str], limit: int = 20) -> str:
    """Characters as the user can read them: repr, so whitespace and controls are visible."""
    chars = list(chars)
    shown = ", ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")
