"""A training corpus: encoded text plus how to cut it into training windows."""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from charseq.errors import UsageError
from charseq.vocab import Vocabulary


@dataclass
class Corpus:
    """What a corpus provider returns.

    ids: the encoded text (N,). With ``random_windows`` set, each run draws that many
    windows at random start positions, wrapping around the end (the seed's task);
    otherwise the text is cut into consecutive windows. ``defaults`` suggests
    training settings (TrainConfig fields) that suit the task.
    """

    name: str
    vocab: Vocabulary
    ids: np.ndarray
    random_windows: int | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_text(cls, name: str, text: str, **kwargs: Any) -> Corpus:
        vocab = Vocabulary.from_text(text)
        return cls(name, vocab, vocab.encode(text), **kwargs)

    @classmethod
    def from_utf8(cls, name: str, data: bytes, **kwargs: Any) -> Corpus:
        """A corpus from UTF-8 bytes, never holding the text as a str: ASCII (most corpora)
        is encoded straight from the bytes, other text in two streaming passes. Peak memory
        is about twice the byte count. Invalid UTF-8 raises UsageError with the byte offset."""
        if not data:
            raise UsageError(f"corpus {name!r} is empty")
        if data.isascii():
            codes = np.frombuffer(data, dtype=np.uint8)
            # Chunks, because bincount and indexing widen uint8 indices to 8 bytes each.
            chunks = [codes[i : i + _INDEX_CHUNK] for i in range(0, len(codes), _INDEX_CHUNK)]
            counts = sum(np.bincount(chunk, minlength=128) for chunk in chunks)
            present = np.flatnonzero(counts)
            vocab = Vocabulary(chr(code) for code in present)
            lookup = np.zeros(128, dtype=np.uint8)
            lookup[present] = np.arange(len(present), dtype=np.uint8)
            ids = np.empty(len(codes), dtype=np.uint8)
            for i, chunk in zip(range(0, len(codes), _INDEX_CHUNK), chunks):
                np.take(lookup, chunk, out=ids[i : i + len(chunk)])
            return cls(name, vocab, ids, **kwargs)
        symbols: set[str] = set()
        length = 0
        for text in _decode_chunks(name, data):
            symbols.update(text)
            length += len(text)
        vocab = Vocabulary(sorted(symbols))
        ids = np.empty(length, dtype=vocab.dtype)
        position = 0
        for text in _decode_chunks(name, data):
            ids[position : position + len(text)] = vocab.encode(text)
            position += len(text)
        return cls(name, vocab, ids, **kwargs)

    def __len__(self) -> int:
        return len(self.ids)

    def num_windows(self, seq_len: int) -> int:
        """How many windows `windows` returns, known before any are cut."""
        if self.random_windows:
            return self.random_windows
        n = len(self.ids)
        if n < seq_len + 1:
            raise UsageError(
                f"corpus {self.name!r} has {n} characters, fewer than one window of "
                f"{seq_len + 1}; use a shorter --seq-len"
            )
        return (n - 1) // seq_len

    def windows(self, seq_len: int, rng: np.random.Generator) -> np.ndarray:
        """Training windows of seq_len + 1 ids, (N, T+1): inputs [:, :-1], targets [:, 1:]."""
        count = self.num_windows(seq_len)
        if self.random_windows:
            starts = rng.integers(0, len(self.ids), size=count)
            return self.ids[(starts[:, None] + np.arange(seq_len + 1)) % len(self.ids)]
        # A view: consecutive windows share their boundary character, nothing is copied.
        return sliding_window_view(self.ids, seq_len + 1)[::seq_len]

    def prime(self, length: int) -> str:
        """The opening of the text, for a sample continuation after training."""
        return self.vocab.decode(self.ids[:length])


_DECODE_CHUNK_BYTES = 1 << 20
_INDEX_CHUNK = 1 << 16


def _decode_chunks(name: str, data: bytes) -> Iterator[str]:
    """The text of UTF-8 `data`, a few MB at a time, split only between characters."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data), _DECODE_CHUNK_BYTES):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
        last = start + _DECODE_CHUNK_BYTES >= len(data)
        try:
            yield decoder.decode(view[start : start + _DECODE_CHUNK_BYTES], final=last)
        except UnicodeDecodeError as exc:
            offset = start - pending + exc.start
            raise UsageError(f"corpus {name!r} is not UTF-8 text (bad byte at offset {offset})") from None
