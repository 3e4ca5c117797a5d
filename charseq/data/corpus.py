"""A training corpus: encoded text plus how to cut it into training windows."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charseq.data.items import END, ITEM_DEFAULTS, item_hashes, item_starts, join_items
from charseq.data.vocab import Vocabulary

_HASH_CHUNK = 1 << 24


@dataclass
class Corpus:
    """What a corpus provider returns.

    ids: the encoded text (N,). With ``random_windows`` set, each run draws that many
    windows at random start positions, wrapping around the end (the seed's task); with
    ``item_starts`` set (``Corpus.from_items``), the text is a list of items, each trained
    from a fresh state with its end predicted (see charseq.data.items); otherwise the trainer
    reads the text as parallel streams. ``defaults`` suggests
    training settings (TrainConfig fields) that suit the task, and may suggest a model
    (``"model": "rnn"``, as ``--model`` takes it).

    ``spec`` is the ``NAME[:ARG]`` it was asked for, ``source`` the same made independent
    of the working directory, and ``spec_options`` the options it was loaded with (such as
    the encoding): ``charseq.get_corpus`` fills them in, and a run records them so that a
    resumed run finds the corpus again. ``files`` are the files it was read from and
    ``roots`` the directories and glob patterns that found them (no run may write over the
    files, or put an output where the roots would read it). ``fingerprint`` identifies the
    content; a provider that already knows a content hash may set it, else it is computed
    from the ids. ``stream`` says it was read from a stream (standard input, a pipe) that
    cannot be read again: a run records no source for it.
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
    stream: bool = False
    item_starts: np.ndarray | None = None
    _item_hashes: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_text(cls, name: str, text: str, **kwargs: Any) -> Corpus:
        """A corpus of `text`, its vocabulary the text's sorted characters. ``defaults=``
        suggests settings: a small text wants a smaller H, T and B than the text defaults."""
        vocab = Vocabulary.from_text(text)
        return cls(name, vocab, vocab.encode(text), **kwargs)

    @classmethod
    def from_items(cls, name: str, items: Sequence[str], end: str = END, **kwargs: Any) -> Corpus:
        """A corpus of `items` (names, words, titles), each trained from a fresh state and
        ending in `end`, which the model learns to predict; `end` may not occur in an item.
        Like makemore, a tenth of the items (at most 1,000) is held out unless ``defaults``
        says otherwise."""
        text = join_items(items, end)
        vocab = Vocabulary.from_text(text)
        ids = vocab.encode(text)
        kwargs["defaults"] = {**ITEM_DEFAULTS, **kwargs.get("defaults", {})}
        corpus = cls(name, vocab, ids, item_starts=item_starts(ids, vocab.symbols.index(end)), **kwargs)
        corpus._item_hashes = item_hashes(items)
        return corpus

    @property
    def item_end(self) -> str | None:
        """The symbol that ends each item, for a corpus of items; None for running text."""
        return None if self.item_starts is None else self.vocab.symbols[int(self.ids[self.item_starts[0]])]

    def items(self) -> list[str]:
        """The items of a corpus of items, as text."""
        if self.item_starts is None:
            raise ValueError(f"corpus {self.name!r} is running text, not items")
        text = self.vocab.decode(self.ids)
        return text[1:-1].split(self.item_end)

    def item_hashes(self) -> np.ndarray:
        """Sorted 64-bit fingerprints of the items: what a checkpoint keeps, so that generation
        can leave out what the model was trained on (charseq.data.items.item_hash)."""
        if self._item_hashes is None:
            self._item_hashes = item_hashes(self.items())
        return self._item_hashes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprint(self) -> str:
        """A SHA-256 of what a run trains on: the symbols, the ids and the window count."""
        if self.content_hash is None:
            kind = f"{self.random_windows}" if self.item_starts is None else "items"
            digest = hashlib.sha256(f"charseq-corpus\0{kind}\0".encode())
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
        """The opening of the text, for a sample continuation after training (nothing, for
        items: each starts afresh)."""
        return "" if self.item_starts is not None else self.vocab.decode(self.ids[:length])
