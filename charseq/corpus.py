"""A training corpus: encoded text plus how to cut it into training windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charseq.vocab import Vocabulary


@dataclass
class Corpus:
    """What a corpus provider returns.

    ids: the encoded text (N,). With ``random_windows`` set, each run draws that many
    windows at random start positions, wrapping around the end (the seed's task);
    otherwise the trainer reads the text as parallel streams. ``defaults`` suggests
    training settings (TrainConfig fields) that suit the task. ``spec`` and
    ``spec_options`` say how to load it again (the CLI's NAME:ARG and options such as the
    encoding); checkpoints record them so that a resumed run can find it.
    """

    name: str
    vocab: Vocabulary
    ids: np.ndarray
    random_windows: int | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    spec: str | None = None
    spec_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_text(cls, name: str, text: str, **kwargs: Any) -> Corpus:
        vocab = Vocabulary.from_text(text)
        return cls(name, vocab, vocab.encode(text), **kwargs)

    def __len__(self) -> int:
        return len(self.ids)

    def windows(self, seq_len: int, rng: np.random.Generator) -> np.ndarray:
        """For a random-window corpus: `random_windows` windows of seq_len + 1 ids at random
        starts, wrapping around the end, (N, T+1): inputs [:, :-1], targets [:, 1:]."""
        if not self.random_windows:
            raise ValueError(f"corpus {self.name!r} is read as streams, not random windows")
        starts = rng.integers(0, len(self.ids), size=self.random_windows)
        return self.ids[(starts[:, None] + np.arange(seq_len + 1)) % len(self.ids)]

    def prime(self, length: int) -> str:
        """The opening of the text, for a sample continuation after training."""
        return self.vocab.decode(self.ids[:length])

