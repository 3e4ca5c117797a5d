"""What the serving tests and the decoding tests share: a small vocabulary, an untrained
model whose greedy text varies with the prompt, and the engine driven in this thread."""

from __future__ import annotations

from charseq.data.vocab import Vocabulary
from charseq.hooks.registry import get_registry
from charseq.models.build import build_model
from charseq.serving.api import Limits, ServedModel, read_request
from charseq.serving.engine import Engine

VOCAB = Vocabulary("abcdefghij .\n")


def random_model(spec: str = "gru:layers=2", hidden: int = 24, seed: int = 3):
    """Untrained, but with weights large enough that greedy text varies with the prompt."""
    model = build_model(spec, {}, len(VOCAB), hidden, seed=seed)
    model.flat *= 3.0
    return model


def served(vocab: Vocabulary = VOCAB, item_end: str | None = None) -> ServedModel:
    return ServedModel("m", vocab, get_registry(), item_end)


def request(body: dict, limits: Limits = Limits(), vocab: Vocabulary = VOCAB, item_end: str | None = None):
    return read_request(body, served(vocab, item_end), limits)


def results(engine: Engine, *requests) -> list[list[str]]:
    """Drive the engine in this thread until every request is done; each one's texts."""
    collected = [[[] for _ in range(r.choices)] for r in requests]
    done = [False] * len(requests)
    for _ in range(100_000):
        for k, r in enumerate(requests):
            taken = r.output.take()
            if taken.error is not None:
                raise taken.error
            for index, text in taken.texts.items():
                collected[k][index].append(text)
            done[k] = done[k] or taken.done
        if all(done):
            return [["".join(parts) for parts in texts] for texts in collected]
        engine.advance()
    raise AssertionError("the engine did not finish")
