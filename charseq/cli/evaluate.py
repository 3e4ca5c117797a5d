"""`charseq eval`: a checkpoint's loss on a corpus."""

from __future__ import annotations

import json
from pathlib import Path

import click

from charseq import blas
from charseq.cli.options import (complete_names, corpus_options, encoding_option, exact_text_option, json_option,
                                 threads_option)
from charseq.checkpoints.format import load
from charseq.cli.output import say
from charseq.data.corpora import get_corpus
from charseq.errors import counted
from charseq.training.evaluation import evaluate_corpus, loss_metrics


@click.command(name="eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--corpus", "corpus_spec", required=True, metavar="NAME[:ARG]", shell_complete=complete_names("corpus"),
              help="The text to evaluate on: text:PATH, or any corpus.")
@encoding_option
@exact_text_option
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Parallel streams.")
@click.option("--seq-len", type=click.IntRange(min=1), default=64, show_default=True, help="Characters per window.")
@json_option
@threads_option
def evaluate_command(checkpoint_path, corpus_spec, encoding, exact_text, batch_size, seq_len, as_json, threads):
    """Print a checkpoint's loss on a corpus: nats and bits per character, and perplexity.

    A corpus of items (lines:PATH) is scored item by item, each from a fresh state, the
    end of each counted as a character (as training's validation loss is)."""
    saved = load(checkpoint_path)
    corpus = get_corpus(corpus_spec, **corpus_options(encoding, exact_text))
    with blas.limited(threads):
        loss = evaluate_corpus(saved.model, saved.vocab, corpus, batch_size, seq_len)
    metrics = {"corpus": corpus.name, "characters": len(corpus), **loss_metrics(loss)}
    if as_json:
        say(json.dumps(metrics), essential=True)
    else:
        say(f"{corpus.name}: {counted(len(corpus), 'character')}, loss {loss:.4f} nats/char, "
            f"{metrics['bpc']:.4f} bits/char, perplexity {metrics['perplexity']:.3f}", essential=True)

