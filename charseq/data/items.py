"""Corpora of items (names, titles, words): each item is trained from a fresh state, and
its end is a symbol the model predicts, as makemore does.

The ids hold every item after an end symbol, and one more at the very end:
``\\nemma\\nolivia\\n``. ``starts`` (N + 1,) are the positions of those end symbols, so
item i is read as inputs ``ids[starts[i] : starts[i + 1]]`` (the end symbol, which starts
it, then its characters) and targets one to the right (its characters, then its end).

Items are batched by length, each batch holding items of exactly one length: no padding,
no masks, and every model takes (B, T) batches as it does for text. A held-out set of
items, drawn with a fixed seed so that every run on a file is scored on the same items,
measures the loss per character with each item's end counted, as makemore counts it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from charseq.errors import UsageError

END = "\n"  # the symbol that starts and ends every item: one item per line
MAX_VAL_ITEMS = 1000  # makemore holds out min(1000, 10 %)
ITEM_DEFAULTS = {"val_fraction": 0.1}
HELD_OUT_SEED = 0  # the same held-out items for every run on a corpus, whatever its --seed
EVAL_CHARS = 1 << 16  # characters scored in one call: memory stays at a few MB, whatever the lengths


def join_items(items: Sequence[str], end: str = END) -> str:
    """The text a corpus of `items` encodes: each item after an end symbol, one at the end."""
    if not items:
        raise UsageError("a corpus of items needs at least one item")
    for number, item in enumerate(items, 1):
        if not item:
            raise UsageError(f"item {number} is empty")
        if end in item:
            raise UsageError(f"item {number} holds the end symbol {end!r}")
    return end + end.join(items) + end


def item_starts(ids: np.ndarray, end_id: int) -> np.ndarray:
    """The positions of the end symbols in `ids`, checked to frame non-empty items."""
    starts = np.flatnonzero(ids == end_id)
    if len(starts) < 2 or starts[0] != 0 or starts[-1] != len(ids) - 1 or (np.diff(starts) < 2).any():
        raise UsageError("the ids of a corpus of items must be items (none empty) each after the end symbol, "
                         "with one more at the end")
    return starts


def item_hash(item: str) -> int:
    """A 64-bit fingerprint of one item: what a checkpoint keeps of its training items."""
    return int.from_bytes(hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def item_hashes(items: Sequence[str]) -> np.ndarray:
    """The sorted, distinct fingerprints of `items` (uint64)."""
    return np.unique(np.fromiter((item_hash(item) for item in items), dtype=np.uint64, count=len(items)))


def held_out(count: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) item indices, each sorted: at most MAX_VAL_ITEMS items held out,
    drawn with a fixed seed so that every run on a corpus is scored on the same items."""
    held = min(MAX_VAL_ITEMS, int(count * val_fraction))
    if held and count - held < 1:
        held = 0
    chosen = np.random.default_rng(HELD_OUT_SEED).permutation(count)
    return np.sort(chosen[held:]), np.sort(chosen[:held])


def batch_plan(lengths: np.ndarray, batch_size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Batches of items of one length: the items' order sorted by length (stable, so a
    shuffled order stays shuffled within a length), and each batch as (start, stop) into
    it; the batches of all lengths are interleaved by where their first item stood."""
    by_length = np.argsort(lengths, kind="stable")
    ordered = lengths[by_length]
    edges = np.flatnonzero(np.diff(ordered)) + 1
    batches: list[tuple[int, int]] = []
    for start, stop in zip(np.r_[0, edges], np.r_[edges, len(ordered)]):
        batches.extend((int(s), int(min(s + batch_size, stop))) for s in range(start, stop, batch_size))
    batches.sort(key=lambda batch: by_length[batch[0]])
    return by_length, batches


def count_batches(lengths: np.ndarray, batch_size: int) -> int:
    """How many batches batch_plan makes: whatever the order, the same number."""
    _, counts = np.unique(lengths, return_counts=True)
    return int(np.sum(-(-counts // batch_size)))


def windows(ids: np.ndarray, starts: np.ndarray, items: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets (B, length) of `items`, all `length` long (their end included)."""
    window = ids[starts[items][:, None] + np.arange(length + 1)]  # (B, length + 1)
    return window[:, :-1], window[:, 1:]


def training_batches(ids: np.ndarray, starts: np.ndarray, items: np.ndarray, order: np.ndarray, batch_size: int,
                     first: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) of each batch of an epoch that takes `items` in `order`, from batch `first` on."""
    shuffled = items[order]
    lengths = starts[shuffled + 1] - starts[shuffled]
    by_length, plan = batch_plan(lengths, batch_size)
    for start, stop in plan[first:]:
        chosen = shuffled[by_length[start:stop]]
        yield windows(ids, starts, chosen, int(lengths[by_length[start]]))


def evaluate_items(model, ids: np.ndarray, starts: np.ndarray, items: np.ndarray | None = None) -> float:
    """Mean loss per character of `model` over `items` (all when None), each read from a
    zero state, each item's end counted as a character."""
    if items is None:
        items = np.arange(len(starts) - 1)
    lengths = starts[items + 1] - starts[items]
    total, count = 0.0, 0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for length in np.unique(lengths):
            group = items[lengths == length]
            step = max(1, EVAL_CHARS // int(length))
            for start in range(0, len(group), step):
                chosen = group[start : start + step]
                loss, _ = model.loss(*windows(ids, starts, chosen, int(length)), None)
                total += float(loss) * len(chosen) * int(length)
                count += len(chosen) * int(length)
    return total / count
