"""Continue a prime with a trained model, N samples in one batched pass."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from charseq.errors import UsageError
from charseq.model import VanillaRNN
from charseq.vocab import Vocabulary

Sampler = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def generate(
    model: VanillaRNN,
    vocab: Vocabulary,
    prime: str,
    length: int,
    sampler: Sampler,
    rng: np.random.Generator | int | None = None,
    num_samples: int = 1,
) -> list[str]:
    """Return `num_samples` continuations of `prime`, each `length` characters (prime excluded)."""
    if not prime:
        raise UsageError("the prime must have at least one character")
    if length < 0:
        raise UsageError(f"length must be 0 or more, got {length}")
    if num_samples < 1:
        raise UsageError(f"num-samples must be at least 1, got {num_samples}")
    rng = np.random.default_rng(rng)
    x = np.broadcast_to(vocab.encode(prime).astype(np.intp), (num_samples, len(prime)))  # (N, P)
    step = model.stepper(num_samples)
    logits = step.feed(x)
    out = np.empty((length, num_samples), dtype=np.intp)  # (length, N): row t is one step's ids
    for t in range(length):
        ids = sampler(logits, rng)
        out[t] = ids
        if t + 1 < length:
            logits = step(ids)
    return [vocab.decode(row) for row in out.T]
