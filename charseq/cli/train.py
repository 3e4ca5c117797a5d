"""`charseq train`: a new run or a resumed one, its progress, and its closing sample."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from charseq import blas
from charseq.cli.options import (complete_names, corpus_options, encoding_option, exact_text_option,
                                 resumed_threads_option, shortcut_callbacks, training_options)
from charseq.cli.output import say
from charseq.decoding.closing import ClosingSample
from charseq.decoding.settings import MAX_CHARACTERS
from charseq.errors import UsageError, counted
from charseq.files import shown
from charseq.models.build import model_spec
from charseq.runs.settings import format_duration


@click.command(short_help="Train a model on a corpus and save a checkpoint.")
@click.option("--corpus", "corpus_spec", metavar="NAME[:ARG]", shell_complete=complete_names("corpus"),
              help="What to train on: alphabet, digits, text:PATH, lines:PATH (one item per line), or a plugin's "
                   "corpus.  [required unless --resume]")
@encoding_option
@exact_text_option
@click.option("--model", "model_spec", metavar="NAME[:KEY=VALUE,...]", shell_complete=complete_names("model"),
              help="The model: rnn, gru, lstm (each with layers=N), transformer or a plugin's; see `charseq models`.  "
                   "[default: the corpus's suggestion, else gru:layers=2]")
@click.option("--resume", "resume_path", type=click.Path(path_type=Path), metavar="CHECKPOINT",
              help="Continue the run a checkpoint was saved from, exactly: the same corpus, settings, callbacks "
                   "and outputs. It may change --epochs (more), --eval-every, --out, --corpus (the same text, "
                   "moved) and its callbacks.")
@training_options
@click.option("--out", type=click.Path(),
              help="Where to save the checkpoint.  [default: CORPUS.npz; resuming: the run's]")
@click.option("--force", is_flag=True, help="Replace files at --out, --metrics and checkpoint paths that are not this "
                                             "run's (a new run refuses them).")
@click.option("--metrics", "metrics_path", type=click.Path(),
              help="Write one JSON line per evaluation to this file (the `metrics` callback).")
@click.option("--patience", type=click.IntRange(min=0), metavar="EPOCHS",
              help="Stop after this many epochs without improvement (of val_loss, else loss, by more than "
                   "--min-delta): the `early-stopping` callback.")
@click.option("--min-delta", type=float, help="With --patience: the smallest change that counts as improvement.  "
                                              "[default: 0]")
@click.option("--restore-best/--no-restore-best", default=None,
              help="With --patience: end with the best epoch's weights.  [default: restore]")
@click.option("--checkpoint-every", type=click.IntRange(min=0), metavar="EPOCHS",
              help="Also save --out every this many epochs (0: only at the end).")
@click.option("--callback", "callback_specs", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              shell_complete=complete_names("callback"),
              help="Add a training callback by name (repeatable; called in the order given); see `charseq callbacks`.")
@click.option("--drop-callback", "dropped", multiple=True, metavar="NAME",
              help="With --resume: leave out the run's callbacks of this name (repeatable).")
@click.option("--sample-length", type=click.IntRange(min=0, max=MAX_CHARACTERS), metavar="N",
              help="Characters the model adds to the corpus's opening in the sample printed at the end (0: no "
                   "sample; a model of items prints ten items).  [default: 200; random windows: 20]")
@click.option("--progress/--no-progress", default=None,
              help="Draw the progress bar on stderr.  [default: when stderr is a terminal]")
@click.option("--all-epochs", is_flag=True,
              help="Print every epoch's line (by default at most about one a second, always the first and the "
                   "last; --metrics logs every evaluation).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or epoch lines.")
@resumed_threads_option
def train(corpus_spec, encoding, exact_text, model_spec, resume_path, out, force, metrics_path, patience, min_delta, restore_best,
          checkpoint_every, callback_specs, dropped, sample_length, progress, all_epochs, quiet, threads, **settings):
    """Train a model on a corpus and save a checkpoint.

    Settings left out come from the model's suggestions (the transformer's: see `charseq
    models`), then the corpus's (see the README), then from the text defaults: two layers of 320 GRUs, T=96, B=32, Adam at 4e-3 (the input weights'
    steps 15 times larger) with a cosine schedule over 5 epochs, dropout 0.12, gradient norm
    clipped at 5. With --time-limit, the schedule runs over the time instead, and the epochs
    are as many as fit unless --epochs is given (then whichever ends first).

    A new run refuses to replace a file at --out (resume it, or --force). Ctrl-C, SIGTERM or SIGHUP
    saves a checkpoint at the next step and exits (130, 143 or 129); `--resume` continues it
    exactly. A second one aborts at once, leaving the last checkpoint as it was.

    \b
    Examples:
      charseq train --corpus alphabet
      charseq train --corpus text:novel.txt --metrics novel.jsonl --patience 3 --out novel.npz
      charseq train --corpus text:novel.txt --model lstm:layers=2 --hidden-size 256
      charseq train --corpus lines:names.txt
      charseq train --corpus text:novel.txt --time-limit 5m
      charseq train --resume novel.npz --epochs 30
    """
    from charseq.training.run import Run  # here: `charseq --help` need not load the training stack

    callbacks = shortcut_callbacks(metrics_path, patience, min_delta, restore_best, checkpoint_every)
    callbacks += list(callback_specs)
    read_as = corpus_options(encoding, exact_text)
    extra = [] if quiet else [_progress_bar(progress, all_epochs)]
    if resume_path is not None:
        run = Run.resume(resume_path, out=out, corpus=corpus_spec, corpus_options=read_as, model=model_spec,
                         callbacks=callbacks, drop_callbacks=dropped, force=force, extra_callbacks=extra, **settings)
    else:
        if corpus_spec is None:
            raise UsageError("missing option --corpus (or --resume CHECKPOINT); see charseq train --help")
        if dropped:
            raise UsageError("--drop-callback leaves out a resumed run's callbacks; it needs --resume")
        run = Run.start(corpus_spec, model=model_spec, out=out, callbacks=callbacks, corpus_options=read_as, force=force,
                        extra_callbacks=extra, **settings)
    if threads is None:  # a resumed run goes on with the threads it trained with: exactly
        threads = run.recorded_threads or blas.available_cores()
    try:
        with blas.limited(threads):
            if not quiet and not run.complete:  # a complete run says so first, and how to train on
                _describe_run(run, blas.threads_in_use() or threads)  # what BLAS uses, not only what was asked
            result = run.fit()
    finally:  # an interrupted or failed run gets no on_train_end: clear the bar for the message
        for bar in extra:
            bar.close()
    if result.status == "interrupted":
        say(result.message, err=True)
        sys.exit(result.exit_code)
    say(result.message)
    if sample_length != 0 and result.status != "complete":
        _print_sample(run.sample(sample_length))


def _progress_bar(draw, all_epochs: bool):
    from charseq.cli.progress import EPOCH_LINE_SECONDS, ProgressBar

    if sys.stderr is None:  # closed (2>&-): nowhere to draw
        draw = False
    return ProgressBar(draw=draw, write=say, epoch_line_seconds=0 if all_epochs else EPOCH_LINE_SECONDS)


def _describe_run(run, threads: int) -> None:
    config, trainer, corpus = run.config, run.trainer, run.corpus
    held_out = f", {trainer.batches.held_out}" if trainer.batches.held_out is not None else ""
    items = f"{counted(len(corpus.item_starts) - 1, 'item')}, " if corpus.item_starts is not None else ""
    window = "" if items else f" T={config.seq_len}"  # an item is read whole
    clipping = ", ".join(f"{name}={value:g}" for name, value in (("clip", config.clip), ("clip-norm", config.clip_norm))
                         if value) or "no clipping"
    dropout = f" dropout={config.dropout:g}" if config.dropout else ""
    dropout += f" input-lr-scale={config.input_lr_scale:g}" if config.input_lr_scale != 1 else ""
    dropout += f" weight-decay={config.weight_decay:g}" if config.weight_decay else ""
    length = f"epochs={config.epochs or 'unbounded'}"
    if config.time_limit:
        length += f" time-limit={format_duration(config.time_limit)}"
    say(f"training on {corpus.name}: {items}{counted(len(corpus), 'character')}{held_out}, {counted(len(corpus.vocab), 'symbol')}, "
        f"{model_spec(run.spec.model['name'], run.spec.model.get('options', {}))} H={config.hidden_size}{window} B={config.batch_size} {config.optimizer} lr={config.lr:g} "
        f"{clipping}{dropout} warmup={config.warmup} {length} threads={threads}")
    if run.resumed_path is not None:
        plan = ""
        if config.time_limit:
            plan = (f", planned to end at step {trainer.planned_steps:,}" if trainer.planned_steps is not None else
                    ", measuring its pace anew (it stopped before its plan was made)")
        say(f"resuming from {run.resumed_path} at step {trainer.step:,} (epoch {trainer.epoch + 1}, "
            f"step {trainer.step_in_epoch} of {trainer.steps_per_epoch}){plan}; saving to {shown(run.out)}")


def _print_sample(sample: ClosingSample) -> None:
    """The closing sample: the corpus's opening, then the model's text after a mark (one
    the text does not hold); or the items it makes."""
    if sample.items:
        say(f"samples ({len(sample.texts)} items the model makes, at temperature {sample.temperature:g}):")
        for item in sample.texts:
            say(f"  {item}")
        return
    after = f" after {sample.mark}" if sample.mark else ""
    say(f"sample (the corpus's first {len(sample.prime)} characters, then the model's {len(sample.texts[0])}{after}):")
    say(f"{sample.prime}{sample.mark}{sample.texts[0]}")

