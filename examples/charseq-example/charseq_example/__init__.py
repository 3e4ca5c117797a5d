"""An example charseq plugin, built only on charseq's public API and hooks."""

from __future__ import annotations

import csv
from pathlib import Path

import click
import numpy as np

import charseq
from charseq import Corpus, Vocabulary, hookimpl


def vowels(arg: str | None = None) -> Corpus:
    """The cycle a e i o u; ARG is the number of training windows (default 200)."""
    vocab = Vocabulary("aeiou")
    windows = int(arg) if arg else 200
    defaults = {"model": "rnn", "hidden_size": 16, "seq_len": 4, "batch_size": 10, "lr": 2.0, "warmup": 50,
                "epochs": 40, "dropout": 0.2}
    return Corpus("vowels", vocab, vocab.encode("aeiou"), random_windows=windows, defaults=defaults)


class LeastLikely:
    """Always the least likely symbol: the opposite of argmax, for contrast."""

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(logits).argmin(axis=1)


class LossLog:
    """Append each epoch's loss to a CSV file: path=FILE."""

    # The option that names a file this callback writes: charseq makes it absolute when the
    # run is recorded (a resumed run writes the same file) and checks it before training.
    output_options = ["path"]

    def __init__(self, path: str = "loss.csv"):
        self.path = Path(path)

    @hookimpl
    def on_train_begin(self, trainer):
        # A new run starts the file; a resumed one keeps the rows up to where it resumes
        # (rows after it, which a crash or an earlier line left, would be written again).
        rows = []
        if trainer.step > 0 and self.path.exists():
            with self.path.open(newline="") as f:
                rows = [row for row in csv.reader(f)][1:]
            rows = [row for row in rows if row and row[0].isdigit() and int(row[0]) <= trainer.epoch]
        with self.path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "step", "loss"])
            writer.writerows(rows)

    @hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([epoch, trainer.step, f"{metrics['loss']:.6f}"])


@hookimpl
def register_corpora(register):
    register("vowels", vowels)


@hookimpl
def register_samplers(register):
    register("least-likely", LeastLikely)


@hookimpl
def register_callbacks(register):
    register("loss-log", LossLog)


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("checkpoint", type=click.Path(dir_okay=False))
    def vocab(checkpoint):
        """Print a checkpoint's vocabulary, one symbol and its id per line."""
        for index, symbol in enumerate(charseq.load(checkpoint).vocab.symbols):
            click.echo(f"{index}\t{symbol!r}")
