"""A training corpus: encoded text plus how to cut it into training windows."""

from __future__ import annotations

from collections.abc import Mapping
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

