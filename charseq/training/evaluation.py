"""How well a model predicts a text: the mean loss per character, in nats, bits and perplexity."""

from __future__ import annotations

import math

import numpy as np

from charseq.data.corpus import Corpus
from charseq.data.items import evaluate_items
from charseq.data.vocab import Vocabulary, show_characters
from charseq.errors import CharseqError, UsageError, counted
from charseq.models.base import Model
from charseq.models.build import model_label

LN2 = math.log(2)
EVAL_STREAM_CHARS = 4096


def loss_metrics(loss: float, prefix: str = "") -> dict[str, float]:
    """A loss in nats per character, in bits per character, and as perplexity."""
    return {f"{prefix}loss": loss, f"{prefix}bpc": loss / LN2,
            f"{prefix}perplexity": math.exp(loss) if loss < 700 else math.inf}


def evaluate(model: Model, ids: np.ndarray, batch_size: int, seq_len: int, windows: int | None = None) -> float:
    """Mean loss per character of `model` predicting `ids`, read as parallel streams of
    windows with the state carried; `windows`: only the first so many windows of the
    streams (a sample, to time an evaluation by).

    Each stream starts from a zero state and predicts its first characters badly, so
    streams are kept at least EVAL_STREAM_CHARS long (up to batch_size of them): the
    cold starts then weigh about 0.5 %, where 64 streams over a 55k-character text
    would add some 0.03 nats. Short texts get fewer, shorter streams.
    """
    if len(ids) < 2:
        raise UsageError("evaluation needs at least two characters")
    if batch_size < 1 or seq_len < 1:
        raise UsageError(f"evaluation needs a batch size and a length of at least 1, got {batch_size} and {seq_len}")
    seq_len = min(seq_len, getattr(model, "max_window", None) or seq_len)  # a transformer's context
    streams, stream_length, T = _streams(len(ids), batch_size, seq_len)
    inputs = ids[: streams * stream_length].reshape(streams, stream_length)  # (B, L)
    targets = ids[1 : streams * stream_length + 1].reshape(streams, stream_length)
    total, count, h = 0.0, 0, None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for start in range(0, stream_length - T + 1, T)[:windows]:
            loss, h = model.loss(inputs[:, start : start + T], targets[:, start : start + T], h)
            total += loss * streams * T
            count += streams * T
    return total / count


def evaluation_windows(characters: int, batch_size: int, seq_len: int) -> int:
    """How many windows `evaluate` reads of a text this long."""
    _, stream_length, T = _streams(characters, batch_size, seq_len)
    return len(range(0, stream_length - T + 1, T))


def _streams(characters: int, batch_size: int, seq_len: int) -> tuple[int, int, int]:
    """The streams `evaluate` reads a text in: how many, how long, and the window T."""
    streams = max(1, min(batch_size, (characters - 1) // max(seq_len, EVAL_STREAM_CHARS)))
    stream_length = (characters - 1) // streams
    return streams, stream_length, min(seq_len, stream_length)


def check_items_fit(model: Model, corpus: Corpus, advice: str = "") -> None:
    """Refuse a corpus of items whose longest (its end included) is longer than the model
    reads at once (its `max_window`, a transformer's context): in training and in eval."""
    limit = getattr(model, "max_window", None)
    if corpus.item_starts is None or limit is None:
        return
    longest = int(np.diff(corpus.item_starts).max())
    if longest > limit:
        raise UsageError(f"corpus {corpus.name!r} has items of up to {longest:,} characters with their ends; "
                         f"{model_label(model.name)} reads at most {limit} at once (its context){advice}")


def evaluate_corpus(model: Model, vocab: Vocabulary, corpus: Corpus, batch_size: int = 64, seq_len: int = 64) -> float:
    """Mean loss per character of `model` (whose symbols are `vocab`) on `corpus`, whose ids
    are in the corpus's own vocabulary and are mapped onto the model's. Running text is read
    as in `evaluate`; a corpus of items item by item, each from a fresh state, its end
    counted as a character (as training's validation loss is). A character the model does
    not know is refused, naming it; a loss that is not a number is a CharseqError."""
    unknown = vocab.unknown(corpus.vocab.symbols)
    if unknown:
        raise UsageError(f"corpus {corpus.name!r} has {counted(len(unknown), 'character')} the model does not know: "
                         f"{show_characters(unknown)}")
    mapping = np.array([vocab.symbols.index(c) for c in corpus.vocab.symbols], dtype=vocab.dtype)
    check_items_fit(model, corpus)
    if corpus.item_starts is not None:
        loss = evaluate_items(model, mapping[corpus.ids], corpus.item_starts)
    else:
        loss = evaluate(model, mapping[corpus.ids], batch_size, seq_len)
    if not np.isfinite(loss):
        raise CharseqError(f"the loss of {model_label(model.name)} on {corpus.name!r} is {loss}, not a number")
    return loss
