"""The closing sample: what a trained model makes of its corpus, shown when a run ends.

Sampled at temperature 1 with the run's seed, as char-rnn, makemore and nanoGPT show
theirs: a greedy sample shows ``the the the ...`` for every young text model, which says
less about it than a draw from what it has learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charseq.data.corpus import Corpus
from charseq.decoding.generate import generate, generate_items
from charseq.decoding.settings import Decoding
from charseq.models.base import Model

SAMPLE_ITEMS = 10  # items made for a corpus of items
SAMPLE_PRIME = 48  # characters of the corpus's opening, cut at a space or a line's end
TEMPERATURE = 1.0
_MARKS = "»|>#~"  # the first the text does not hold goes between the prime and the model's text


@dataclass(frozen=True)
class ClosingSample:
    """Text a model made: `texts` continue `prime` (running text), or are whole new items
    (`items`, with no prime). `mark` is a character the corpus does not hold, to show
    where the model's text begins ("" when it holds them all)."""

    prime: str
    texts: list[str]
    mark: str
    items: bool
    temperature: float = TEMPERATURE


def default_length(corpus: Corpus) -> int:
    """Characters to make: a random-window corpus has short windows, so 20; else 200."""
    return 20 if corpus.random_windows else 200


def closing_sample(model: Model, corpus: Corpus, length: int, seed: int | None, window: int) -> ClosingSample:
    """What `model` makes of `corpus`: items of its own, or a continuation of the corpus's
    opening (its first `window` characters at most, cut at a space or line's end)."""
    rng = np.random.default_rng(seed)
    decoding = Decoding(temperature=TEMPERATURE, length=length)
    vocab = corpus.vocab
    if corpus.item_end is not None:
        items = generate_items(model, vocab, corpus.item_end, decoding, num_samples=SAMPLE_ITEMS, rng=rng)
        return ClosingSample("", items, "", items=True)
    prime = corpus.prime(min(window, SAMPLE_PRIME))
    cut = max(prime.rfind(" "), prime.rfind("\n"))
    if cut >= SAMPLE_PRIME // 2:
        prime = prime[: cut + 1]
    text = generate(model, vocab, prime, rng=rng, decoding=decoding)[0]
    return ClosingSample(prime, [text], vocab.unused(_MARKS), items=False)
