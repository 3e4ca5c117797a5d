"""Bundled samplers: batched logits (B, V) in, ids (B,) out."""

from __future__ import annotations

import math

import numpy as np

from charseq import hookimpl
from charseq.errors import UsageError


class Argmax:
    """Always the most likely symbol: deterministic."""

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return logits.argmax(axis=1)


class Temperature:
    """Sample from softmax(logits / temperature); lower is more conservative, near 0 is argmax."""

    # Gumbel-max: argmax(logits / T + G), G standard Gumbel noise, is an exact draw from
    # softmax(logits / T). Multiplied through by T it is argmax(logits + T * G): the same
    # draw, with no division to overflow at tiny T, and -inf logits never win. The noise is
    # drawn in blocks, as one draw per step would cost more than a small model's step.
    _BLOCK_VALUES = 1 << 16

    def __init__(self, temperature: float = 1.0):
        temperature = float(temperature)
        if not temperature > 0 or math.isinf(temperature):
            raise UsageError(f"temperature must be a positive number, got {temperature}")
        self.temperature = temperature
        self._rng = None
        self._noise = np.empty((0, 0, 0))  # (steps, B, V): T * G for the coming steps
        self._next = 0

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng is not self._rng or self._next == len(self._noise) or self._noise.shape[1:] != logits.shape:
            steps = max(1, self._BLOCK_VALUES // logits.size)
            # In the logits' own dtype, so the per-step add below is not a mixed-type one.
            self._noise = rng.gumbel(scale=self.temperature, size=(steps, *logits.shape)).astype(logits.dtype)
            self._rng, self._next = rng, 0
        scores = self._noise[self._next]  # used once, so it can take the sum in place
        self._next += 1
        scores += logits
        return scores.argmax(axis=1)


@hookimpl
def register_samplers(register):
    register("argmax", Argmax)
    register("temperature", Temperature)
