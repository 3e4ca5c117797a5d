"""A training corpus: encoded text plus how to cut it into training windows."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charseq.vocab import Vocabulary

_HASH_CHUNK = 1 << 24


@dataclass
class Corpus:
    """What a corpus provider returns.

    ids: the encoded text (N,). With ``random_windows`` set, each run draws that many
    windows at random start positions, wrapping around the end (the seed's task);
    otherwise the trainer reads the text as parallel streams. ``defaults`` suggests
    training settings (TrainConfig fields) that suit the task, and may suggest a model
    (``"model": "rnn"``, as ``--model`` takes it).

    ``spec`` is the ``NAME[:ARG]`` it was asked for, ``source`` the same made independent
    of the working directory, and ``spec_options`` the options it was loaded with (such as
    the encoding): ``charseq.get_corpus`` fills them in, and a run records them so that a
    resumed run finds the corpus again. ``files`` are the files it was read from and
    ``roots`` the directories and glob patterns that found them (no run may write over the
    files, or put an output where the roots would read it). ``fingerprint`` identifies the
    content; a provider that already knows a content hash may set it, else it is computed
    from the ids.
    """

    name: str
    vocab: Vocabulary
    ids: np.ndarray
    random_windows: int | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    spec: str | None = None
    source: str | None = None
    spec_options: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    content_hash: str | None = None

    @classmethod
    def from_text(cls, name: str, text: str, **kwargs: Any) -> Corpus:
        """A corpus of `text`, its vocabulary the text's sorted characters. ``defaults=``
        suggests settings: a small text wants a smaller H, T and B than the text defaults."""
        vocab = Vocabulary.from_text(text)
        return cls(name, vocab, vocab.encode(text), **kwargs)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprint(self) -> str:
        """A SHA-256 of what a run trains on: the symbols, the ids and the window count."""
        if self.content_hash is None:
            digest = hashlib.sha256(f"charseq-corpus\0{self.random_windows}\0".encode())
            digest.update(self.vocab.to_json().encode("utf-8"))
            for start in range(0, len(self.ids), _HASH_CHUNK):
                digest.update(np.ascontiguousarray(self.ids[start : start + _HASH_CHUNK]).tobytes())
            self.content_hash = digest.hexdigest()
        return self.content_hash

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
