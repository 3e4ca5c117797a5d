"""`charseq eval`: a checkpoint's loss, on the part of its corpus its run held out or on a corpus given."""

from __future__ import annotations

import json
from pathlib import Path

import click

from charseq import blas
from charseq.cli.options import (complete_names, corpus_options, encoding_option, exact_text_option, json_option,
                                 threads_option)
from charseq.cli.output import say
from charseq.training.evaluation import loss_metrics
from charseq.training.scoring import score_checkpoint


@click.command(name="eval", short_help="Print a checkpoint's loss, bits per character and perplexity.")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--corpus", "corpus_spec", metavar="NAME[:ARG]", shell_complete=complete_names("corpus"),
              help="The text to score: text:PATH, lines:PATH, or any corpus.  [default: the part of the run's own "
                   "corpus it held out]")
@click.option("--held-out", is_flag=True,
              help="With --corpus: score only the part the run held out of it (it must be the run's text, perhaps "
                   "moved).")
@encoding_option
@exact_text_option
@click.option("--batch-size", type=click.IntRange(min=1), help="Parallel streams a text is read in.  [default: the run's; --corpus: 64]")
@click.option("--seq-len", type=click.IntRange(min=1),
              help="Characters per window.  [default: the run's; --corpus: 64]")
@json_option
@threads_option
def evaluate_command(checkpoint_path, corpus_spec, held_out, encoding, exact_text, batch_size, seq_len, as_json,
                     threads):
    """Print a checkpoint's loss: nats and bits per character, and perplexity.

    Without --corpus, on the part of its run's corpus the run held out, read as training
    read it: the run's last validation loss, again (a run that held nothing out is scored
    on all of its text). With --corpus, on all of that corpus; if it is the run's own text,
    training part included, the output says so.

    A corpus of items (lines:PATH) is scored item by item, each from a fresh state, the
    end of each counted as a character (as training's validation loss is).

    \b
    Examples:
      charseq eval novel.npz
      charseq eval novel.npz --corpus text:other.txt
      charseq eval names.npz --corpus lines:moved/names.txt --held-out
    """
    if held_out and corpus_spec is None:
        held_out = None  # the default already: the run's own held-out part
    with blas.limited(threads):
        score = score_checkpoint(checkpoint_path, corpus_spec, corpus_options=corpus_options(encoding, exact_text),
                                 held_out=held_out or None, batch_size=batch_size, seq_len=seq_len)
    metrics = {"corpus": score.corpus.name, "held_out": score.held_out, "scored": score.scored,
               "characters": score.characters, **loss_metrics(score.loss)}
    if as_json:  # the note is a field here, so that stdout and stderr hold one JSON object in all
        say(json.dumps({**metrics, "note": score.note} if score.note else metrics), essential=True)
        return
    say(f"{score.corpus.name}: {score.scored}, loss {score.loss:.4f} nats/char, {metrics['bpc']:.4f} bits/char, "
        f"perplexity {metrics['perplexity']:.3f}", essential=True)
    if score.note:
        say(f"note: {score.note}", err=True)
