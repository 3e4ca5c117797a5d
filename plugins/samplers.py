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

    def __init__(self, temperature: float = 1.0):
        temperature = float(temperature)
        if not temperature > 0 or math.isinf(temperature):
            raise UsageError(f"temperature must be a positive number, got {temperature}")
        self.temperature = temperature

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # float64 and max-subtraction keep small temperatures from overflowing.
        scaled = np.asarray(logits, dtype=np.float64) / self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        probs = np.exp(scaled)
        cumulative = np.cumsum(probs, axis=1)  # (B, V)
        draws = rng.random(len(probs)) * cumulative[:, -1]
        ids = (cumulative <= draws[:, None]).sum(axis=1)  # inverse CDF, one draw per row
        return np.minimum(ids, probs.shape[1] - 1)


@hookimpl
def register_samplers(register):
    register("argmax", Argmax)
    register("temperature", Temperature)
