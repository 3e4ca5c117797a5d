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
    """Sample from softmax(logits / temperature); lower is more conservative, 0 is argmax.

    temperature: 0 or more; below 1 favours the likely symbols, above 1 flattens the choice, 0 is greedy
    """

    # Gumbel-max: argmax(logits / T + G), G standard Gumbel noise, is an exact draw from
    # softmax(logits / T). Multiplied through by T it is argmax(logits + T * G): the same
    # draw, with no division to overflow at tiny T, and -inf logits never win. The noise is
    # drawn in blocks, as one draw per step would cost more than a small model's step.
    _BLOCK_VALUES = 1 << 16

    def __init__(self, temperature: float = 1.0):
        temperature = _number("temperature", temperature)
        if not temperature >= 0 or math.isinf(temperature):
            raise UsageError(f"temperature must be a positive number, or 0 for greedy decoding; got {temperature}")
        if temperature > 1e6:  # past this every sampler is uniform, and the noise overflows float32
            raise UsageError(f"temperature must be at most 1e6, got {temperature:g}")
        self.temperature = temperature
        self._rng: np.random.Generator | None = None
        self._noise = np.empty((0, 0, 0))  # (steps, B, V): T * G for the coming steps
        self._next = 0

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.temperature == 0:  # greedy: the most likely symbol, which every filter keeps
            return logits.argmax(axis=1)
        if rng is not self._rng or self._next == len(self._noise) or self._noise.shape[1:] != logits.shape:
            steps = max(1, self._BLOCK_VALUES // logits.size)
            # In the logits' own dtype, so the per-step add below is not a mixed-type one.
            self._noise = rng.gumbel(scale=self.temperature, size=(steps, *logits.shape)).astype(logits.dtype)
            self._rng, self._next = rng, 0
        scores = self._noise[self._next]  # used once, so it can take the sum in place
        self._next += 1
        scores += self.filter(logits)
        return scores.argmax(axis=1)

    def filter(self, logits: np.ndarray) -> np.ndarray:
        """The logits with the symbols this sampler never picks set to -inf."""
        return logits

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        scaled = np.asarray(logits, dtype=np.float64)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        with np.errstate(over="ignore"):  # after the shift: at a tiny temperature the others go to -inf, the
            scaled /= self.temperature    # most likely stay at 0 (before the shift it was inf - inf)
        probs = np.exp(scaled)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs


class TopK(Temperature):
    """Sample among the k most likely symbols only, with a temperature.

    k: how many of the most likely symbols to sample among
    temperature: applied before sampling (see the temperature sampler)
    """

    def __init__(self, k: int = 40, temperature: float = 1.0):
        super().__init__(temperature)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise UsageError(f"top-k needs k to be a positive integer, got {k!r}")
        self.k = int(k)

    def filter(self, logits: np.ndarray) -> np.ndarray:
        vocab_size = logits.shape[1]
        if self.k >= vocab_size:
            return logits
        keep = np.argpartition(logits, vocab_size - self.k, axis=1)[:, vocab_size - self.k :]  # exactly k
        filtered = np.full_like(logits, -np.inf)
        np.put_along_axis(filtered, keep, np.take_along_axis(logits, keep, axis=1), axis=1)
        return filtered


class TopP(Temperature):
    """Nucleus sampling: among the fewest most likely symbols whose probabilities reach p.

    p: the share of probability, in [0, 1], the kept symbols reach together; 0 is greedy
    temperature: applied before the symbols are chosen
    """

    def __init__(self, p: float = 0.9, temperature: float = 1.0):
        super().__init__(temperature)
        p = _number("top-p's p", p)
        if not 0 <= p <= 1:
            raise UsageError(f"top-p needs p in [0, 1] (0: greedy), got {p}")
        self.p = p

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.p == 0:  # the fewest that reach 0: the most likely alone (OpenAI's top_p 0 is greedy too)
            return logits.argmax(axis=1)
        return super().__call__(logits, rng)

    def filter(self, logits: np.ndarray) -> np.ndarray:
        probs = self._probabilities(logits)  # after the temperature, as common APIs do
        order = np.argsort(-probs, axis=1, kind="stable")  # most likely first
        cumulative = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
        kept = (cumulative < self.p).sum(axis=1, keepdims=True) + 1  # the symbol reaching p is in
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(logits.shape[1])[None, :], axis=1)
        return np.where(rank < kept, logits, -np.inf)


class MinP(Temperature):
    """Sample among symbols at least p times as likely as the most likely one.

    p: in [0, 1]; 0 keeps every symbol
    temperature: applied before the symbols are chosen
    """

    def __init__(self, p: float = 0.05, temperature: float = 1.0):
        super().__init__(temperature)
        p = _number("min-p's p", p)
        if not 0 <= p <= 1:
            raise UsageError(f"min-p needs p in [0, 1], got {p}")
        self.p = p

    def filter(self, logits: np.ndarray) -> np.ndarray:
        probs = self._probabilities(logits)
        return np.where(probs >= self.p * probs.max(axis=1, keepdims=True), logits, -np.inf)


def _number(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise UsageError(f"{what} must be a number, got {value!r}")
    return float(value)


@hookimpl
def register_samplers(register):
    register("argmax", Argmax)
    register("temperature", Temperature)
    register("top-k", TopK)
    register("top-p", TopP)
    register("min-p", MinP)
