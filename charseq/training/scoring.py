"""What a checkpoint is scored on, said plainly: by default the part of its run's corpus the
run held out, found again as training found it, so that the loss is the run's own
validation loss; or a corpus given, with a word when that corpus is the run's training text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charseq.checkpoints import format as checkpoints
from charseq.data.corpora import get_corpus
from charseq.data.corpus import Corpus
from charseq.errors import UsageError, counted, label, setting
from charseq.training.batches import Batches
from charseq.training.evaluation import evaluate_corpus
from charseq.runs.spec import RunSpec
from charseq.training.resuming import check_corpus_may_be_read, recorded_run, resumed_corpus


@dataclass(frozen=True)
class Score:
    """A checkpoint's mean loss per character (`loss`, nats) on `characters` characters:
    `scored` says which (``"3,203 items the run held out"``), `note` what a reader should
    know besides (that a corpus given holds the run's training text)."""

    corpus: Corpus
    held_out: bool
    scored: str
    characters: int
    loss: float
    note: str = ""


def score_checkpoint(path: str | os.PathLike, corpus: str | Corpus | None = None, *,
                     corpus_options: dict[str, Any] | None = None, held_out: bool | None = None,
                     batch_size: int | None = None, seq_len: int | None = None) -> Score:
    """Score the checkpoint at `path`. With no `corpus`, on the part of its run's corpus the
    run held out (the whole corpus when it held nothing out), in the run's own windows unless
    `batch_size` or `seq_len` say otherwise (a corpus of items is read item by item); with
    a `corpus`, on all of it (default 64 streams of 64), or with ``held_out=True`` on the
    part the run held out of it, which must then be the run's text (perhaps moved)."""
    path = Path(path)
    saved = checkpoints.load(path)
    spec = recorded_run(saved)
    if spec is None and (corpus is None or held_out):
        why = "was saved without its run" if saved.format_version >= 3 else (
            f"was written by charseq {saved.charseq_version or '0.1'}, which did not record its run")
        if corpus is None:
            raise UsageError(f"{str(path)!r} {why}, so its corpus and held-out part are not known; give the text to "
                             f"score with {setting('corpus')}")
        raise UsageError(f"{str(path)!r} {why}, so the part its run held out is not known; score all of the text, "
                         f"without {setting('held_out')}")
    if corpus is None or held_out:
        assert spec is not None
        check_corpus_may_be_read(path, saved, spec, corpus_given=corpus is not None, doing="score")
        loaded = resumed_corpus(spec, corpus, dict(corpus_options or {}), doing="score")
        batches = Batches(loaded, spec.config)
        if held_out is not False:
            loss = batches.validation_loss(saved.model, batch_size, seq_len)
            if loss is not None:
                size = _held_out_size(batches)
                return Score(loaded, True, f"{size} the run held out", _held_out_characters(batches), loss,
                             _later_weights(saved))
            if held_out:
                raise UsageError(f"the run held nothing out of {loaded.name!r} ({_split(spec)}); score all of it "
                                 f"without {setting('held_out')}")
        scored = evaluate_corpus(saved.model, saved.vocab, loaded, batch_size or spec.config.batch_size,
                                 seq_len or spec.config.seq_len)
        note = "" if held_out is False else "the run held nothing out, so this is the text it trained on"
        return Score(loaded, False, _size(loaded), len(loaded), scored, note)
    loaded = get_corpus(corpus, **dict(corpus_options or {})) if isinstance(corpus, str) else corpus
    loss = evaluate_corpus(saved.model, saved.vocab, loaded, batch_size or 64, seq_len or 64)
    note = ""
    if spec is not None and _is_run_text(spec, corpus, corpus_options):
        trained = Batches(loaded, spec.config)
        if trained.val_items is not None or trained.val_ids is not None:
            note = (f"this is the run's own text, its training part included; {setting('held_out')} scores only "
                    f"the {_held_out_size(trained)} the run held out")
        else:
            note = "this is the text the run trained on"
    return Score(loaded, False, _size(loaded), len(loaded), loss, note)


def _is_run_text(spec: RunSpec, corpus: str | Corpus, options: dict[str, Any] | None) -> bool:
    """Whether `corpus` is the text the run trained on, read as the run read it (an earlier
    release's run records its reading options apart): the test that --held-out makes."""
    try:
        resumed_corpus(spec, corpus, dict(options or {}), doing="score")
    except UsageError:
        return False
    return True


def _later_weights(saved: checkpoints.Checkpoint) -> str:
    """A note when the weights are not those the run last evaluated (it was interrupted
    after its last evaluation), so the score cannot be the recorded validation loss."""
    training = saved.training or {}
    history = training.get("history")
    last = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}
    step, evaluated, loss = training.get("step"), last.get("step"), last.get("val_loss")
    if training.get("weights_from") is not None or not isinstance(step, int) or not isinstance(evaluated, int) \
            or step == evaluated or not isinstance(loss, (int, float)):
        return ""
    return (f"the weights were saved at step {step:,}, after the run's last evaluation (step {evaluated:,}, "
            f"validation loss {loss:.4f}; it was interrupted since): this scores the weights saved")


def _split(spec: RunSpec) -> str:
    config = spec.config
    return f"{label('val_fraction')} {config.val_fraction:g}, {label('max_val_chars')} {config.max_val_chars:,}"


def _size(corpus: Corpus) -> str:
    if corpus.item_starts is not None:
        return f"{counted(len(corpus.item_starts) - 1, 'item')} ({counted(len(corpus), 'character')})"
    return counted(len(corpus), "character")


def _held_out_size(batches: Batches) -> str:
    if batches.val_items is not None:
        return f"{counted(len(batches.val_items), 'item')} ({counted(_held_out_characters(batches), 'character')})"
    assert batches.val_ids is not None
    return counted(len(batches.val_ids), "character")


def _held_out_characters(batches: Batches) -> int:
    """Characters scored in the held-out part: an item's characters and its end."""
    if batches.val_items is not None:
        starts = batches.item_starts
        return int((starts[batches.val_items + 1] - starts[batches.val_items]).sum())
    assert batches.val_ids is not None
    return len(batches.val_ids)
