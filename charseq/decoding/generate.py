"""Continue a prime with a trained model: N samples in one batched pass, as a stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from charseq.errors import CharseqError, UsageError, setting
from charseq.models.base import Model
from charseq.models.build import model_label
from charseq.data.vocab import Vocabulary

Sampler = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def stream(
    model: Model,
    vocab: Vocabulary,
    prime: str,
    length: int,
    sampler: Sampler,
    rng: np.random.Generator | int | None = None,
    num_samples: int = 1,
    stop: str | None = None,
    repetition_penalty: float = 1.0,
    repetition_window: int | None = None,
) -> Iterator[list[str]]:
    """Yield, step by step, the new text of each of `num_samples` continuations of `prime`.

    A continuation has at most `length` characters and ends before the first `stop`
    (which is not part of it); text that might begin `stop` is held back until it is
    known not to. The stream ends when every sample has ended. A repetition penalty
    above 1 makes symbols already in the prime or the sample (or in its last
    `repetition_window` characters) less likely, as in common generation APIs.
    """
    if stop == "":
        raise UsageError("the stop text must not be empty")
    scanners = [StopScanner(stop) for _ in range(num_samples)]
    for ids in _sample_ids(model, vocab, prime, length, sampler, rng, num_samples,
                           repetition_penalty, repetition_window):
        yield [scanner.feed(char) for scanner, char in zip(scanners, vocab.decode(ids))]
        if all(scanner.done for scanner in scanners):
            return
    yield [scanner.flush() for scanner in scanners]


def generate(
    model: Model,
    vocab: Vocabulary,
    prime: str,
    length: int,
    sampler: Sampler,
    rng: np.random.Generator | int | None = None,
    num_samples: int = 1,
    stop: str | None = None,
    repetition_penalty: float = 1.0,
    repetition_window: int | None = None,
) -> list[str]:
    """The `num_samples` continuations of `prime` (prime excluded); see `stream`."""
    _check(prime, length, num_samples)
    args = (model, vocab, prime, length, sampler, rng, num_samples)
    if stop is None:  # nothing to watch for: decode once at the end
        out = np.empty((length, num_samples), dtype=np.intp)  # (length, N)
        for t, ids in enumerate(_sample_ids(*args, repetition_penalty, repetition_window)):
            out[t] = ids
        return [vocab.decode(row) for row in out.T]
    texts: list[list[str]] = [[] for _ in range(num_samples)]
    for pieces in stream(*args, stop, repetition_penalty, repetition_window):
        for text, piece in zip(texts, pieces):
            text.append(piece)
    return ["".join(text) for text in texts]


def _sample_ids(model, vocab, prime, length, sampler, rng, num_samples, repetition_penalty, repetition_window):
    """The sampled ids (N,) of each step."""
    _check(prime, length, num_samples)
    rng = np.random.default_rng(rng)
    prime_ids = vocab.encode(prime).astype(np.intp)
    penalty = RepetitionPenalty.create(repetition_penalty, repetition_window, len(vocab), prime_ids, num_samples)
    step = model.stepper(num_samples)
    if not (callable(step) and hasattr(step, "feed")):
        raise CharseqError(f"{model_label(model.name)}: stepper() returned {type(step).__name__}, not a runner "
                           "with feed(x) and __call__(ids)")
    logits = step.feed(np.broadcast_to(prime_ids, (num_samples, len(prime_ids))))  # (N, V)
    if np.shape(logits) == (num_samples, len(vocab)) and not np.isfinite(logits).all():  # checked once: it costs
        raise CharseqError(f"{model_label(model.name)} gives logits that are not finite numbers")
    for t in range(length):
        if np.shape(logits) != (num_samples, len(vocab)):
            raise CharseqError(f"{model_label(model.name)}: its stepper returned logits of shape {np.shape(logits)}; "
                               f"they must be ({num_samples}, {len(vocab)})")
        ids = checked_ids(sampler(logits if penalty is None else penalty.apply(logits), rng), num_samples, len(vocab))
        yield ids
        if penalty is not None:
            penalty.add(ids)
        if t + 1 < length:
            logits = step(ids)


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


def _check(prime: str, length: int, num_samples: int) -> None:
    if not prime:
        raise UsageError("the prime must have at least one character")
    if length < 0:
        raise UsageError(f"length must be 0 or more, got {length}")
    if num_samples < 1:
        raise UsageError(f"num-samples must be at least 1, got {num_samples}")


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


PENALTY_RANGE = (1e-6, 1e6)  # beyond it a logit scaled by the penalty leaves float32's range: inf, then NaN


def repetition_problem(penalty: float, window: int | None = None) -> str | None:
    """What is wrong with a repetition penalty and window, or None. A penalty below 1 makes
    used symbols likelier; one outside PENALTY_RANGE means nothing a float32 logit can hold."""
    low, high = PENALTY_RANGE
    if not low <= penalty <= high:  # (NaN too)
        return f"repetition penalty must be above 0, from {low:g} to {high:g} (1 is none), got {penalty!r}"
    if window is not None and window < 1:
        return f"repetition window must be at least 1, got {window}"
    return None


class RepetitionPenalty:
    """Divides positive logits (multiplies negative ones) of symbols seen recently by `penalty`."""

    @classmethod
    def create(cls, penalty: float, window: int | None, vocab_size: int, prime_ids: np.ndarray,
               batch: int) -> RepetitionPenalty | None:
        """None when the penalty is 1, so sampling pays nothing for it."""
        problem = repetition_problem(penalty, window)
        if problem:
            raise UsageError(problem)
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


def generate_items(
    model: Model,
    vocab: Vocabulary,
    end: str,
    num_samples: int,
    sampler: Sampler,
    rng: np.random.Generator | int | None = None,
    prime: str = "",
    max_length: int = 200,
    exclude: np.ndarray | None = None,
    max_rounds: int = 100,
    repetition_penalty: float = 1.0,
    repetition_window: int | None = None,
    stop: str | None = None,
) -> list[str]:
    """`num_samples` new items from a model trained on items: each starts from a fresh state
    after the `end` symbol (then `prime`, which starts every item) and ends where the model
    ends it, where `stop` appears, or after `max_length` characters past the prime; neither
    the end symbol nor the prime is returned. Items whose fingerprints are in `exclude` (a
    checkpoint's ``seen_items``) are drawn again, for at most `max_rounds` batches; too few
    new ones is a CharseqError."""
    from charseq.data.items import item_hash

    if end not in vocab:
        raise UsageError(f"the end symbol {end!r} is not in the vocabulary")
    if end in prime:
        raise UsageError(f"the prime holds the end of an item ({end!r}); a prime starts each item")
    if num_samples < 1:
        raise UsageError(f"num-samples must be at least 1, got {num_samples}")
    if max_length < 1 and not prime:
        raise UsageError(f"an item needs a length of at least 1 ({setting('length')})")
    if stop == "":
        raise UsageError("the stop text must not be empty")
    rng = np.random.default_rng(rng)
    kept: list[str] = []
    cut = 0  # items that --length ended, not the model
    batch = num_samples if exclude is None else max(num_samples, 16)
    for _ in range(max_rounds):
        drawn = generate(model, vocab, end + prime, max_length, sampler, rng, batch, end,
                         repetition_penalty, repetition_window)
        cut += sum(len(item) == max_length for item in drawn)
        if stop:
            drawn = [item.split(stop, 1)[0] for item in drawn]  # cut before any check of what is new
        drawn = [item for item in drawn if prime or item]  # an item the model ends at once is none
        if exclude is not None:
            hashes = np.array([item_hash(prime + item) for item in drawn], dtype=np.uint64)
            drawn = [item for item, seen in zip(drawn, np.isin(hashes, exclude)) if not seen]
        kept.extend(drawn)
        if len(kept) >= num_samples:
            return kept[:num_samples]
    wanted = "new items (not in its training file)" if exclude is not None else "items that are not empty"
    if cut > max_rounds * batch // 2 or stop:
        why = f"most were cut short by {setting('length')} or {setting('stop')}; allow longer items"
    elif exclude is not None:
        why = f"it has learnt its items by heart (train less, or with more {setting('dropout')})"
    else:
        why = "it ends items at once (train it longer)"
    raise CharseqError(f"in {max_rounds * batch:,} tries the model made only {len(kept)} {wanted}; {why}")
