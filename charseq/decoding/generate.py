"""Continue a prime with a trained model: N samples in one batched pass, as a stream, or
whole new items of a model trained on items. Every setting is a `Decoding`'s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from charseq.data.items import item_hash
from charseq.data.vocab import Vocabulary
from charseq.decoding.settings import MAX_CHARACTERS, Decoding, DecodingError, Sampler
from charseq.decoding.steps import RepetitionPenalty, StopScanner, checked_ids
from charseq.errors import CharseqError, UsageError, label
from charseq.models.base import Model
from charseq.models.build import model_label

Seed = np.random.Generator | int | None


def stream(model: Model, vocab: Vocabulary, prime: str, length: int | None = None, sampler: str | Sampler | None = None,
           rng: Seed = None, *, decoding: Decoding | None = None, **settings: Any) -> Iterator[list[str]]:
    """Yield, step by step, the new text of each of the decoding's `num_samples`
    continuations of `prime`.

    The settings are `decoding`'s, with `length`, `sampler` and any other Decoding field
    given as a keyword over them. A continuation has at most `length` characters and ends
    before the first `stop` (which is not part of it); text that might begin a stop is held
    back until it is known not to. The stream ends when every sample has ended.
    """
    decoding = Decoding.of(decoding, length=length, sampler=sampler, **settings)
    prime = _checked_prime(prime, vocab, decoding)
    scanners = [StopScanner(decoding.stop) for _ in range(decoding.num_samples)]
    for ids in _sample_ids(model, vocab, prime, decoding, rng):
        yield [scanner.feed(char) for scanner, char in zip(scanners, vocab.decode(ids))]
        if all(scanner.done for scanner in scanners):
            return
    yield [scanner.flush() for scanner in scanners]


def generate(model: Model, vocab: Vocabulary, prime: str, length: int | None = None,
             sampler: str | Sampler | None = None, rng: Seed = None, *, decoding: Decoding | None = None,
             **settings: Any) -> list[str]:
    """The decoding's `num_samples` continuations of `prime` (prime excluded); see `stream`.

    ``generate(model, vocab, "The ", 200, "top-p:p=0.9", rng=1, num_samples=3, stop="\\n\\n")``
    """
    decoding = Decoding.of(decoding, length=length, sampler=sampler, **settings)
    if decoding.length > MAX_CHARACTERS:  # held whole (stream() makes text of any length)
        raise DecodingError("length", f"{label('length')} must be at most {MAX_CHARACTERS:,} for text made whole, "
                                      f"got {decoding.length:,}")
    if decoding.stop:
        texts: list[list[str]] = [[] for _ in range(decoding.num_samples)]
        for pieces in stream(model, vocab, prime, rng=rng, decoding=decoding):
            for text, piece in zip(texts, pieces):
                text.append(piece)
        return ["".join(text) for text in texts]
    prime = _checked_prime(prime, vocab, decoding)  # nothing to watch for: decode once at the end
    out = np.empty((decoding.length, decoding.num_samples), dtype=np.intp)  # (length, N)
    for t, ids in enumerate(_sample_ids(model, vocab, prime, decoding, rng)):
        out[t] = ids
    return [vocab.decode(row) for row in out.T]


def generate_items(model: Model, vocab: Vocabulary, end: str, decoding: Decoding | None = None, *, prime: str = "",
                   rng: Seed = None, exclude: np.ndarray | None = None, max_rounds: int = 100,
                   **settings: Any) -> list[str]:
    """The decoding's `num_samples` new items from a model trained on items.

    Each starts from a fresh state after the `end` symbol (then `prime`, which starts every
    item) and ends where the model ends it, where a stop appears, or after `length`
    characters past the prime; neither the end symbol nor the prime is returned. Items
    whose fingerprints are in `exclude` (a checkpoint's ``seen_items``) are drawn again,
    for at most `max_rounds` batches; too few new ones is a CharseqError.
    """
    decoding = Decoding.of(decoding, **settings)
    if end not in vocab:
        raise UsageError(f"the end symbol {end!r} is not in the vocabulary")
    prime = _checked_prime(prime, vocab, decoding) if prime else ""
    if end in prime:
        raise DecodingError("prime", f"the prime holds the end of an item ({end!r}); a prime starts each item")
    if decoding.length < 1 and not prime:
        raise DecodingError("length", f"an item needs a length of at least 1 ({label('length')})")
    rng = np.random.default_rng(rng)
    wanted = decoding.num_samples
    batch = wanted if exclude is None else max(wanted, 16)
    drawing = Decoding.of(decoding, num_samples=batch, stop=(end, *decoding.stop), skip_unknown=False)
    kept: list[str] = []
    cut = 0  # items that the length ended, not the model
    for _ in range(max_rounds):
        drawn = generate(model, vocab, end + prime, rng=rng, decoding=drawing)
        cut += sum(len(item) == decoding.length for item in drawn)
        drawn = [item for item in drawn if prime or item]  # an item the model ends at once is none
        if exclude is not None:
            hashes = np.array([item_hash(prime + item) for item in drawn], dtype=np.uint64)
            drawn = [item for item, seen in zip(drawn, np.isin(hashes, exclude)) if not seen]
        kept.extend(drawn)
        if len(kept) >= wanted:
            return kept[:wanted]
    raise CharseqError(_too_few(len(kept), max_rounds * batch, cut, decoding, exclude is not None))


def _too_few(kept: int, tries: int, cut: int, decoding: Decoding, new_only: bool) -> str:
    wanted = "new items (not in its training file)" if new_only else "items that are not empty"
    if cut > tries // 2 or decoding.stop:
        why = f"most were cut short by {label('length')} or {label('stop')}; allow longer items"
    elif new_only:
        why = f"it has learnt its items by heart (train less, or with more {label('dropout')})"
    else:
        why = "it ends items at once (train it longer)"
    return f"in {tries:,} tries the model made only {kept} {wanted}; {why}"


def _checked_prime(prime: str, vocab: Vocabulary, decoding: Decoding) -> str:
    if not prime:
        raise DecodingError("prime", "the prime must have at least one character")
    if decoding.skip_unknown:
        return decoding.known_prime(prime, vocab)
    if vocab.unknown(prime):
        try:
            vocab.encode(prime)  # its one line, which names the characters
        except UsageError as exc:
            raise DecodingError("prime", str(exc)) from None
    return prime


def _sample_ids(model: Model, vocab: Vocabulary, prime: str, decoding: Decoding, rng: Seed) -> Iterator[np.ndarray]:
    """The sampled ids (N,) of each step."""
    batch, length = decoding.num_samples, decoding.length
    sampler = decoding.make_sampler()
    rng = np.random.default_rng(rng)
    prime_ids = vocab.encode(prime).astype(np.intp)
    penalty = RepetitionPenalty.create(decoding.repetition_penalty, decoding.repetition_window, len(vocab), prime_ids,
                                       batch)
    step = model.stepper(batch)
    if not (callable(step) and hasattr(step, "feed")):
        raise CharseqError(f"{model_label(model.name)}: stepper() returned {type(step).__name__}, not a runner "
                           "with feed(x) and __call__(ids)")
    logits = step.feed(np.broadcast_to(prime_ids, (batch, len(prime_ids))))  # (N, V)
    if np.shape(logits) == (batch, len(vocab)) and not np.isfinite(logits).all():  # checked once: it costs
        raise CharseqError(f"{model_label(model.name)} gives logits that are not finite numbers")
    for t in range(length):
        if np.shape(logits) != (batch, len(vocab)):
            raise CharseqError(f"{model_label(model.name)}: its stepper returned logits of shape {np.shape(logits)}; "
                               f"they must be ({batch}, {len(vocab)})")
        ids = checked_ids(sampler(logits if penalty is None else penalty.apply(logits), rng), batch, len(vocab))
        yield ids
        if penalty is not None:
            penalty.add(ids)
        if t + 1 < length:
            logits = step(ids)
