"""What a request that asks for log-probabilities gets: the model's own, the log-softmax of
its logits before the temperature, a sampler's filter or the repetition penalty changed them
(as OpenAI reports its models'), with the likeliest characters at each point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGPROB_FLOOR = -9999.0  # reported for a probability of 0, as vLLM does


@dataclass(frozen=True)
class Scored:
    """One character with the model's log-probabilities: its own (None for a text's first
    character, which nothing before it predicts) and those of the likeliest characters
    there, most likely first, the character itself among them (None with its own)."""

    char: str
    logprob: float | None
    top: dict[str, float] | None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """The log-probabilities (R, V) of logits (R, V), each row's summing (as probabilities) to 1."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def scores(logprobs: np.ndarray, ids: np.ndarray, symbols: np.ndarray, top: int) -> list[Scored]:
    """Each row's id with its log-probability and the `top` likeliest of its row (R, V),
    the id's own among them (as OpenAI's: up to top + 1)."""
    logprobs = np.fmax(logprobs, LOGPROB_FLOOR)  # a probability of 0 (or a model's NaN): JSON has no -inf
    rows = np.arange(len(ids))
    chosen = logprobs[rows, ids].tolist()
    best = np.argsort(-logprobs, axis=1, kind="stable")[:, :top]  # (R, top), most likely first
    best_values = np.take_along_axis(logprobs, best, axis=1).tolist()
    scored = []
    for row, symbol in enumerate(ids.tolist()):
        top_of = dict(zip(symbols[best[row]].tolist(), best_values[row]))
        char = str(symbols[symbol])
        top_of.setdefault(char, chosen[row])
        scored.append(Scored(char, chosen[row], top_of))
    return scored
