"""How a corpus is cut into training steps: random windows, or parallel streams of text.

A corpus with random windows (the seed's task) is trained on shuffled windows, each from
a zero state. Text is trained as char-rnn does: cut into B parallel streams read T
characters at a time, the hidden state carried from one window to the next (truncated
backpropagation through time) and reset at each epoch; the last val_fraction of it (at
most max_val_chars) is held out for validation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from charseq.config import TrainConfig
from charseq.corpus import Corpus
from charseq.errors import UsageError


class Batches:
    """The training and held-out parts of a corpus, and the (x, y) batches of an epoch."""

    def __init__(self, corpus: Corpus, config: TrainConfig):
        self.corpus = corpus
        self.seq_len, self.batch_size = T, B = config.seq_len, config.batch_size
        self.random_windows = bool(corpus.random_windows)
        if self.random_windows:
            self.train_ids, self.val_ids = corpus.ids, None
            windows = corpus.random_windows
            if B > windows:
                raise UsageError(f"batch size {B} is larger than the {windows} training windows; "
                                 "use a smaller --batch-size")
            self.steps_per_epoch = windows // B  # a last partial batch is skipped
            return
        held_out = min(int(len(corpus.ids) * config.val_fraction), config.max_val_chars)
        if held_out < 2:
            held_out = 0
        self.train_ids = corpus.ids[: len(corpus.ids) - held_out]
        self.val_ids = corpus.ids[len(corpus.ids) - held_out :] if held_out else None
        self.stream_length = (len(self.train_ids) - 1) // B
        if self.stream_length < T:
            raise UsageError(
                f"the training text of {corpus.name!r} ({len(self.train_ids):,} characters) is too short "
                f"for {B} streams of at least {T + 1} characters; use a smaller --batch-size or --seq-len"
            )
        self.steps_per_epoch = self.stream_length // T

    @property
    def carries_state(self) -> bool:
        """Streams carry the hidden state from one window to the next; random windows do not."""
        return not self.random_windows

    def epoch(self, first_step: int, windows: np.ndarray | None, order: np.ndarray | None) -> Iterator[tuple]:
        """(x, y), int arrays (B, T), for each step of an epoch from `first_step` on.
        Random windows come in `order` (a permutation of `windows`' rows)."""
        B, T = self.batch_size, self.seq_len
        if self.random_windows:
            for start in range(first_step * B, self.steps_per_epoch * B, B):
                batch = windows[order[start : start + B]]  # (B, T+1)
                yield batch[:, :-1], batch[:, 1:]
            return
        length = self.steps_per_epoch * T
        L = self.stream_length
        inputs = self.train_ids[: B * L].reshape(B, L)[:, :length]  # (B, L) views, no copies
        targets = self.train_ids[1 : B * L + 1].reshape(B, L)[:, :length]
        for start in range(first_step * T, length, T):
            yield inputs[:, start : start + T], targets[:, start : start + T]
