"""How a corpus is cut into training steps: random windows, or parallel streams of text.

A corpus with random windows (the seed's task) is trained on shuffled windows, each from
a zero state. Text is trained as char-rnn does: cut into B parallel streams read T
characters at a time, the hidden state carried from one window to the next (truncated
backpropagation through time) and reset at each epoch; the last val_fraction of it (at
most max_val_chars) is held out for validation. A model that carries nothing from one
window to the next (attention) gains nothing from streams, and reading the same windows
every epoch lets it learn them by heart: it reads a text as windows in shuffled order,
cut at a fresh offset every epoch (drawn from the seed and the epoch, so a resumed run
cuts the same ones). A corpus of items is trained an item at a time, in batches of
items of one length (charseq.data.items).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from charseq.runs.settings import TrainConfig
from charseq.data.corpus import Corpus
from charseq.training.evaluation import evaluate, evaluation_windows
from charseq.errors import UsageError, counted, setting
from charseq.data import items as item_batches


# An evaluation is timed on this fraction of the held-out part, and on no fewer windows of
# a text, or characters of items, than these (each call of the model costs something of its
# own; a text's windows are all alike, items are read by length, in fewer, larger calls).
SAMPLE_EVERY = 32
SAMPLE_WINDOWS = 8
SAMPLE_CHARACTERS = 1 << 17


class Batches:
    """The training and held-out parts of a corpus, and the (x, y) batches of an epoch."""

    def __init__(self, corpus: Corpus, config: TrainConfig, *, streams: bool = True):
        """`streams`: read a text as streams that carry the model's state (False for a model
        that carries none: shuffled windows)."""
        self.corpus = corpus
        self.seed, self.streams = config.seed, streams
        self.seq_len, self.batch_size = T, B = config.seq_len, config.batch_size
        self.random_windows = bool(corpus.random_windows)
        starts = corpus.item_starts
        self.items = starts is not None
        self.val_ids = self.val_items = None
        if starts is not None:
            self.item_starts = starts
            if not np.array_equal(item_batches.item_starts(corpus.ids, int(corpus.ids[starts[0]])), starts):
                raise UsageError(f"corpus {corpus.name!r}: its item_starts are not where its end symbols stand")
            self.train_items, self.val_items = item_batches.held_out(len(starts) - 1, config.val_fraction)
            if not len(self.val_items):
                self.val_items = None
            lengths = starts[self.train_items + 1] - starts[self.train_items]
            self.steps_per_epoch = item_batches.count_batches(lengths, B)
            self.chars_per_step = float(lengths.sum()) / self.steps_per_epoch
            return
        self.chars_per_step = float(B * T)
        windows = corpus.random_windows
        if windows:
            self.train_ids, self.val_ids = corpus.ids, None
            if B > windows:
                raise UsageError(f"batch size {B} is larger than the {windows} training windows; "
                                 f"use a smaller {setting('batch_size')}")
            self.steps_per_epoch = windows // B  # a last partial batch is skipped
            return
        held_out = min(int(len(corpus.ids) * config.val_fraction), config.max_val_chars)
        if held_out < 2:
            held_out = 0
        self.train_ids = corpus.ids[: len(corpus.ids) - held_out]
        self.val_ids = corpus.ids[len(corpus.ids) - held_out :] if held_out else None
        self.stream_length = (len(self.train_ids) - 1) // B
        self.text_windows = (len(self.train_ids) - T) // T  # whole windows at any offset below T
        if streams and self.stream_length < T or not streams and self.text_windows < B:
            needed = (f"{B} stream{'s' if B != 1 else ''} of at least {T + 1} characters" if streams
                      else f"a batch of {counted(B, 'window')} of {T + 1} characters")
            raise UsageError(
                f"the training text of {corpus.name!r} ({counted(len(self.train_ids), 'character')}) is too short "
                f"for {needed}; use a smaller {setting('batch_size')} or {setting('seq_len')}")
        self.steps_per_epoch = self.stream_length // T if streams else self.text_windows // B

    @property
    def carries_state(self) -> bool:
        """Streams carry the hidden state from one window to the next; windows and items do not."""
        return not (self.random_windows or self.items) and self.streams

    @property
    def order_size(self) -> int:
        """How many things an epoch shuffles (random windows, a text's windows, training
        items); 0 for streams."""
        if self.items:
            return len(self.train_items)
        if self.random_windows:
            return self.corpus.random_windows or 0
        return 0 if self.streams else self.text_windows

    def offset(self, epoch: int) -> int:
        """Where an epoch cuts a text into windows, for a model that carries nothing: a
        function of the seed and the epoch alone, so that resuming needs nothing saved."""
        return int(np.random.default_rng([self.seed, epoch]).integers(self.seq_len))

    @property
    def held_out(self) -> str | None:
        """What is held out for validation, for the run's opening line."""
        if self.val_items is not None:
            return f"{counted(len(self.val_items), 'item')} held out"
        return f"{len(self.val_ids):,} held out" if self.val_ids is not None else None

    def validation_loss(self, model, batch_size: int | None = None, seq_len: int | None = None) -> float | None:
        """The mean loss per character on the held-out part (a text in streams of the run's
        windows, or of `batch_size` and `seq_len` given); None when nothing is held out."""
        if self.val_items is not None:
            return item_batches.evaluate_items(model, self.corpus.ids, self.item_starts, self.val_items)
        if self.val_ids is not None:
            return evaluate(model, self.val_ids, batch_size or self.batch_size, seq_len or self.seq_len)
        return None

    def evaluation_seconds(self, model) -> float:
        """About how long one evaluation of the held-out part takes, timed on a sample of it:
        what a time limit plans with before the run has evaluated."""
        started = time.perf_counter()
        if self.val_items is not None:
            lengths = self.item_starts[self.val_items + 1] - self.item_starts[self.val_items]
            total = float(lengths.sum())
            wanted = max(total / SAMPLE_EVERY, SAMPLE_CHARACTERS)
            count = int(np.searchsorted(np.cumsum(lengths), wanted)) + 1  # items until the sample is that long
            sample = self.val_items[:count]
            item_batches.evaluate_items(model, self.corpus.ids, self.item_starts, sample)
            share = float(lengths[:count].sum()) / total
        elif self.val_ids is not None:
            windows = evaluation_windows(len(self.val_ids), self.batch_size, self.seq_len)
            sample_windows = min(windows, max(windows // SAMPLE_EVERY, SAMPLE_WINDOWS))
            evaluate(model, self.val_ids, self.batch_size, self.seq_len, windows=sample_windows)
            share = sample_windows / windows
        else:
            return 0.0
        return (time.perf_counter() - started) / share

    def epoch(self, first_step: int, windows: np.ndarray | None, order: np.ndarray | None,
              offset: int = 0) -> Iterator[tuple]:
        """(x, y), int arrays (B, T), for each step of an epoch from `first_step` on.
        Random windows come in `order` (a permutation of `windows`' rows), items in `order`
        (a permutation of the training items), a text's windows in `order` from `offset`
        (when it is not read as streams)."""
        B, T = self.batch_size, self.seq_len
        if self.items:
            assert order is not None  # the trainer shuffles the items of every epoch
            yield from item_batches.training_batches(self.corpus.ids, self.item_starts, self.train_items,
                                                     order, B, first_step)
            return
        if self.random_windows:
            assert windows is not None and order is not None  # the trainer draws both for every epoch
            for start in range(first_step * B, self.steps_per_epoch * B, B):
                batch = windows[order[start : start + B]]  # (B, T+1)
                yield batch[:, :-1], batch[:, 1:]
            return
        if not self.streams:
            assert order is not None  # the trainer shuffles a text's windows every epoch
            span = np.arange(T + 1)
            for start in range(first_step * B, self.steps_per_epoch * B, B):
                batch = self.train_ids[offset + order[start : start + B, None] * T + span]  # (B, T+1)
                yield batch[:, :-1], batch[:, 1:]
            return
        length = self.steps_per_epoch * T
        L = self.stream_length
        inputs = self.train_ids[: B * L].reshape(B, L)[:, :length]  # (B, L) views, no copies
        targets = self.train_ids[1 : B * L + 1].reshape(B, L)[:, :length]
        for start in range(first_step * T, length, T):
            yield inputs[:, start : start + T], targets[:, start : start + T]
