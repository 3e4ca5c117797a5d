"""What each step of decoding does besides the model: check a sampler's ids, hold back
text that may begin a stop, and penalise repeated symbols. The batched `generate` and the
server's engine share them."""

from __future__ import annotations

import numpy as np

from charseq.errors import CharseqError


class SamplerError(CharseqError):
    """A sampler returned something other than one valid id per sample."""


def checked_ids(ids: object, batch: int, vocab_size: int) -> np.ndarray:
    """A sampler's output, refused unless it is `batch` integer ids in 0..vocab_size-1."""
    array = np.asarray(ids)
    if array.shape != (batch,):
        raise SamplerError(f"the sampler returned an array of shape {array.shape}; it must return one id per "
                           f"sample, shape ({batch},)")
    if array.dtype.kind not in "iu":
        raise SamplerError(f"the sampler returned {array.dtype} values; it must return integer ids")
    if batch and (array.min() < 0 or array.max() >= vocab_size):
        raise SamplerError(f"the sampler returned id {int(array.min() if array.min() < 0 else array.max())}; ids lie "
                           f"in 0..{vocab_size - 1}")
    return array


class StopScanner:
    """Passes one sample's characters through until one of `stops` appears (a server's
    request may name several); text that might begin a stop is held back until it is
    known not to."""

    def __init__(self, stops: str | tuple[str, ...] | None):
        self.stops = tuple(stop for stop in ((stops,) if isinstance(stops, str) else stops or ()) if stop)
        self.pending = ""  # the longest tail that could still begin a stop
        self.done = False

    def feed(self, char: str) -> str:
        if self.done:
            return ""
        if not self.stops:
            return char
        self.pending += char
        ended = [stop for stop in self.stops if self.pending.endswith(stop)]
        if ended:  # the longest is the one that began first
            self.done = True
            out, self.pending = self.pending[: -max(map(len, ended))], ""
            return out
        keep = max(next(k for k in range(min(len(self.pending), len(stop) - 1), -1, -1)
                        if self.pending.endswith(stop[:k])) for stop in self.stops)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.done else self.pending), ""
        return out


class RepetitionPenalty:
    """Divides positive logits (multiplies negative ones) of symbols seen recently by `penalty`."""

    @classmethod
    def create(cls, penalty: float, window: int | None, vocab_size: int, prime_ids: np.ndarray,
               batch: int) -> RepetitionPenalty | None:
        """None when the penalty is 1, so sampling pays nothing for it (the Decoding that
        holds them has checked both)."""
        return None if penalty == 1.0 else cls(penalty, window, vocab_size, prime_ids, batch)

    def __init__(self, penalty: float, window: int | None, vocab_size: int, prime_ids: np.ndarray, batch: int):
        self.penalty = float(penalty)
        self.window = window
        history = prime_ids if window is None else prime_ids[-window:]
        self.counts = np.zeros((batch, vocab_size), dtype=np.int64)  # (N, V) occurrences in the window
        self.counts[:, :] = np.bincount(history, minlength=vocab_size)
        self.recent = [list(history) for _ in range(batch)] if window is not None else None
        self.rows = np.arange(batch)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        penalised = np.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return np.where(self.counts > 0, penalised, logits).astype(logits.dtype)

    def add(self, ids: np.ndarray) -> None:
        self.counts[self.rows, ids] += 1
        if self.recent is not None and self.window is not None:  # (both are set, or neither)
            for row, symbol in enumerate(ids):
                self.recent[row].append(int(symbol))
                if len(self.recent[row]) > self.window:
                    self.counts[row, self.recent[row].pop(0)] -= 1
