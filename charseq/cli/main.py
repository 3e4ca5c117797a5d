"""The `charseq` command: a thin shell over the core's Run, generation and listings.

What a run is, how it resumes, what it may write and how it fails live in the core
(run.py); this module turns options into calls and results into lines and exit codes.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import cast

import click
import numpy as np

import charseq
from charseq import blas
from charseq.runs import settings as settings_table
from charseq.cli.words import WORDS
from charseq.errors import CharseqError, CharseqWarning, Notice, UsageError, counted, spoken
from charseq.files import shown
from charseq.training.interrupt import Aborted
from charseq.decoding.closing import ClosingSample
from charseq.decoding import generate as generation
from charseq.decoding.settings import Decoding
from charseq.decoding.steps import SamplerError
from charseq.hooks.registry import get_registry, parse_spec, set_debug
from charseq.models.build import model_spec
from charseq.data.vocab import show_characters


class _Failure(click.ClickException):
    """A CharseqError on its way out: one line on stderr, exit 1 or 2."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click's stub makes it a ClassVar; here it varies


def _complete_names(kind: str):
    """Shell completion of registered names, for NAME[:ARG] options."""

    def complete(ctx, param, incomplete: str):
        from click.shell_completion import CompletionItem

        try:
            items = get_registry().all(kind)
        except CharseqError:
            return []
        return [CompletionItem(name, help=item.help) for name, item in items.items() if name.startswith(incomplete)]

    return complete


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
exact_text_option = click.option(
    "--exact-text", is_flag=True,
    help="Read text byte for byte: keep \\r\\n line endings and a leading byte-order mark.  [default: \\r\\n is "
         "read as \\n, the mark dropped]")


def _corpus_options(encoding: str | None, exact_text: bool) -> dict[str, object]:
    """--encoding and --exact-text as the corpus's options: only those given, so that a
    resumed run keeps the ones it recorded."""
    options: dict[str, object] = {} if encoding is None else {"encoding": encoding}
    if exact_text:
        options["exact"] = True
    return options


def threads_option(command):
    """--threads N: how many threads BLAS may use for the command's matmuls."""
    return click.option(
        "--threads", type=click.IntRange(min=1), default=blas.available_cores, show_default="all cores",
        help="BLAS threads for the matrix products.",
    )(command)


def say(text: str = "", err: bool = False, essential: bool = False) -> None:
    """click.echo that outlives its stream: a closed pipe (`charseq train | head`), a full
    disk, /dev/full. Training goes on and saves; what it would have printed is dropped.
    When the text is the command's result (`eval --json`, a listing), a stream that cannot
    take it is an error, but for a closed pipe, whose reader has what it wanted."""
    try:
        click.echo(text, err=err)
    except BrokenPipeError:
        _drop_output(sys.stderr if err else sys.stdout)
    except OSError as exc:
        _drop_output(sys.stderr if err else sys.stdout)
        if essential:
            raise CharseqError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _drop_output(stream) -> None:
    """Point a closed stream's descriptor at /dev/null, so that later writes (and the
    interpreter's last flush) succeed silently."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _CharseqGroup(click.Group):
    """Turns CharseqError into one line, and adds the commands plugins register, on demand:
    running a built-in command never loads plugins."""

    # The registry the plugin commands came from, and the names they were added under.
    _plugin_commands: tuple[object, frozenset[str]] = (None, frozenset())

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands or name in self._plugin_commands[1]:
            self._add_plugin_commands()
        return super().get_command(ctx, name)

    def _add_plugin_commands(self) -> None:
        try:
            registry = get_registry()
        except CharseqError as exc:
            raise _Failure(str(exc), exc.exit_code) from None
        source, added = self._plugin_commands
        if source is registry:
            return
        for name in added:  # from plugins that an earlier registry loaded
            self.commands.pop(name, None)
        builtin = set(self.commands)
        try:
            commands = registry.commands(reserved=builtin)
        except CharseqError as exc:  # strict mode
            raise _Failure(str(exc), exc.exit_code) from None
        for name, registered in commands.items():
            self.commands[name] = cast(click.Command, registered.factory)  # a command registers itself
        self._plugin_commands = (registry, frozenset(commands))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with Ctrl-C anywhere (parsing, loading plugins, training) ending
        quietly with 130 where click would print "Aborted!" and exit 1."""
        with warnings.catch_warnings(), spoken(WORDS):  # the core's messages name settings by their flags
            others = warnings.showwarning

            def show(message, category, *rest, **options):
                """charseq's warnings as one line on stderr, like its errors; others as Python shows them."""
                if issubclass(category, CharseqWarning):
                    say(f"charseq: {'' if issubclass(category, Notice) else 'warning: '}{message}", err=True)
                else:
                    others(message, category, *rest, **options)

            warnings.showwarning = show
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, False, **extra)
            try:
                result = super().main(args, prog_name, complete_var, False, **extra)
            except click.exceptions.Abort as exc:
                interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
                say("charseq: interrupted" if interrupted else "Aborted!", err=True)
                sys.exit(130 if interrupted else 1)
            except click.ClickException as exc:
                exc.show()
                sys.exit(exc.exit_code)
            except BrokenPipeError:
                _drop_output(sys.stdout)
                sys.exit(0)
            sys.exit(result if isinstance(result, int) else 0)

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            ctx = super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None
        set_debug(bool(ctx.params.get("debug")))  # before any plugin loads: --debug shows why one failed to import
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's options, parsed here
            raise _one_line(exc) from None
        except CharseqError as exc:
            raise _Failure(str(exc), exc.exit_code) from None
        except Aborted as exc:  # a second Ctrl-C or SIGTERM while training
            say(exc.message or "aborted", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C while starting up, loading, generating or evaluating
            _settle(sys.stdout)
            say("charseq: interrupted", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            culprit = get_registry().culprit(exc) if get_registry.cache_info().currsize else None
            what = f"{culprit} failed" if culprit else "internal error"
            command = f"{ctx.command_path} --debug {ctx.invoked_subcommand or 'COMMAND'} ..."  # --debug goes first
            raise _Failure(f"{what}: {detail} (for the traceback, run {command})", 1) from None


def _settle(stream) -> None:
    """Flush what an interrupted write left in `stream`'s buffer now, or drop it when the
    reader is gone, so that the interpreter's last flush has nothing to complain about."""
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):
        _drop_output(stream)


def _one_line(exc: click.UsageError) -> click.ClickException:
    """Click's usage errors as one line, like every other error, pointing to --help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `charseq` alone shows the help
        return exc
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    if isinstance(exc, click.NoSuchOption) and exc.option_name == "--debug" and exc.ctx is not None \
            and exc.ctx.parent is not None:  # `charseq generate ... --debug`: it is the group's option
        hint = f" (--debug goes before the command: {exc.ctx.parent.command_path} --debug {exc.ctx.info_name} ...)"
    return _Failure(exc.format_message() + hint, exc.exit_code)


@click.group(cls=_CharseqGroup)
@click.version_option(charseq.__version__, prog_name="charseq")
@click.option("--debug", is_flag=True, help="Show the full traceback of unexpected errors.")
def cli(debug: bool) -> None:
    """Character-level text generation with recurrent networks (rnn, gru, lstm), extended by plugins."""


# -- train ----------------------------------------------------------------------


def training_options(command):
    """One option per TrainConfig field, from its type, help and choices: stated once, in config.py."""
    for name, kind, meta in reversed(settings_table.settings()):
        choices = meta.get("choices")
        click_type = click.Choice(choices) if choices else kind
        command = click.option(f"--{name.replace('_', '-')}", name, type=click_type, metavar=meta.get("metavar"),
                               help=meta["help"])(command)
    return command


@cli.command()
@click.option("--corpus", "corpus_spec", metavar="NAME[:ARG]", shell_complete=_complete_names("corpus"),
              help="What to train on: alphabet, digits, text:PATH, lines:PATH (one item per line), or a plugin's "
                   "corpus.  [required unless --resume]")
@click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
@exact_text_option
@click.option("--model", "model_spec", metavar="NAME[:KEY=VALUE,...]", shell_complete=_complete_names("model"),
              help="The model: rnn, gru, lstm (each with layers=N) or a plugin's; see `charseq models`.  "
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
              shell_complete=_complete_names("callback"),
              help="Add a training callback by name (repeatable; called in the order given); see `charseq callbacks`.")
@click.option("--drop-callback", "dropped", multiple=True, metavar="NAME",
              help="With --resume: leave out the run's callbacks of this name (repeatable).")
@click.option("--sample-length", type=click.IntRange(min=0), metavar="N",
              help="Characters the model adds to the corpus's opening in the sample printed at the end (0: no "
                   "sample; a model of items prints ten items).  [default: 200; random windows: 20]")
@click.option("--progress/--no-progress", default=None,
              help="Draw the progress bar on stderr.  [default: when stderr is a terminal]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or epoch lines.")
@threads_option
def train(corpus_spec, encoding, exact_text, model_spec, resume_path, out, force, metrics_path, patience, min_delta, restore_best,
          checkpoint_every, callback_specs, dropped, sample_length, progress, quiet, threads, **settings):
    """Train a model on a corpus and save a checkpoint.

    Settings left out come from the corpus's suggestions (see the README), then from the
    text defaults: two layers of 256 GRUs, T=64, B=64, Adam at 4e-3 (the input weights'
    steps 80 times larger) with a cosine schedule over 5 epochs, dropout 0.1, gradient norm
    clipped at 5.

    A new run refuses to replace a file at --out (resume it, or --force). Ctrl-C, SIGTERM or SIGHUP
    saves a checkpoint at the next step and exits (130, 143 or 129); `--resume` continues it
    exactly. A second one aborts at once, leaving the last checkpoint as it was.

    \b
    Examples:
      charseq train --corpus alphabet
      charseq train --corpus text:novel.txt --metrics novel.jsonl --patience 3 --out novel.npz
      charseq train --corpus text:novel.txt --model lstm:layers=2 --hidden-size 256
      charseq train --corpus lines:names.txt
      charseq train --resume novel.npz --epochs 30
    """
    from charseq.training.run import Run

    callbacks = _shortcut_callbacks(metrics_path, patience, min_delta, restore_best, checkpoint_every)
    callbacks += list(callback_specs)
    corpus_options = _corpus_options(encoding, exact_text)
    extra = [] if quiet else [_progress_bar(progress)]
    if resume_path is not None:
        run = Run.resume(resume_path, out=out, corpus=corpus_spec, corpus_options=corpus_options, model=model_spec,
                         callbacks=callbacks, drop_callbacks=dropped, force=force, extra_callbacks=extra, **settings)
    else:
        if corpus_spec is None:
            raise UsageError("missing option --corpus (or --resume CHECKPOINT); see charseq train --help")
        if dropped:
            raise UsageError("--drop-callback leaves out a resumed run's callbacks; it needs --resume")
        run = Run.start(corpus_spec, model=model_spec, out=out, callbacks=callbacks, corpus_options=corpus_options, force=force,
                        extra_callbacks=extra, **settings)
    if not quiet:
        _describe_run(run)
    try:
        with blas.limited(threads):
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


def _shortcut_callbacks(metrics_path, patience, min_delta, restore_best, checkpoint_every) -> list:
    """--metrics, --patience and --checkpoint-every as the callbacks they stand for, first, in this order."""
    callbacks: list = []
    if metrics_path is not None:
        callbacks.append(("metrics", {"path": str(metrics_path)}))
    if patience is not None:
        callbacks.append(("early-stopping", {"patience": patience, "min_delta": min_delta or 0.0,
                                             "restore_best_weights": restore_best is not False}))
    elif min_delta is not None or restore_best is not None:
        raise UsageError("--min-delta and --restore-best go with --patience")
    if checkpoint_every:
        callbacks.append(("checkpoint", {"every": checkpoint_every}))
    return callbacks


def _progress_bar(draw):
    from charseq.cli.progress import ProgressBar

    if sys.stderr is None:  # closed (2>&-): nowhere to draw
        draw = False
    return ProgressBar(draw=draw, write=say)


def _describe_run(run) -> None:
    config, trainer, corpus = run.config, run.trainer, run.corpus
    held_out = f", {trainer.batches.held_out}" if trainer.batches.held_out is not None else ""
    items = f"{counted(len(corpus.item_starts) - 1, 'item')}, " if corpus.item_starts is not None else ""
    window = "" if items else f" T={config.seq_len}"  # an item is read whole
    clipping = ", ".join(f"{name}={value:g}" for name, value in (("clip", config.clip), ("clip-norm", config.clip_norm))
                         if value) or "no clipping"
    dropout = f" dropout={config.dropout:g}" if config.dropout else ""
    dropout += f" input-lr-scale={config.input_lr_scale:g}" if config.input_lr_scale != 1 else ""
    say(f"training on {corpus.name}: {items}{counted(len(corpus), 'character')}{held_out}, {counted(len(corpus.vocab), 'symbol')}, "
        f"{model_spec(run.spec.model['name'], run.spec.model.get('options', {}))} H={config.hidden_size}{window} B={config.batch_size} {config.optimizer} lr={config.lr:g} "
        f"{clipping}{dropout} warmup={config.warmup} epochs={config.epochs}")
    if run.resumed_path is not None:
        say(f"resuming from {run.resumed_path} at step {trainer.step:,} (epoch {trainer.epoch + 1}, "
            f"step {trainer.step_in_epoch} of {trainer.steps_per_epoch}); saving to {shown(run.out)}")


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


# -- generate ---------------------------------------------------------------------


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--prime", help="Text to continue (a model of items: the start of every item).  "
                              "[default: one random symbol; items: none]")
@click.option("--length", "--max-length", "length", type=click.IntRange(min=0), default=200, show_default=True,
              help="Characters to generate at most.")
@click.option("--stop", help="End a sample where this text appears (it is not printed).")
@click.option("--sampler", "sampler_spec", default="temperature", show_default=True, metavar="NAME[:KEY=VALUE,...]",
              shell_complete=_complete_names("sampler"), help="How to pick each character; see `charseq samplers`.")
@click.option("--temperature", type=float,
              help="Sampling temperature (lower is more conservative), for samplers that take one; ignored, with a "
                   "warning, by those that do not (argmax). 0 is greedy decoding whatever the sampler, as in "
                   "OpenAI's API. Greedy decoding is --sampler argmax or --temperature 0.")
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True,
              help="Above 1, makes symbols already used less likely.")
@click.option("--repetition-window", type=int, metavar="N",
              help="Count only the last N characters as used.  [default: all]")
@click.option("--seed", type=click.IntRange(min=0), help="Makes sampling reproducible.")
@click.option("--skip-unknown", is_flag=True, help="Leave out prime characters the model does not know.")
@click.option("--num-samples", type=int, default=1, show_default=True,
              help="Samples, in one batch, each printed on its own line (--json keeps apart samples that hold "
                   "newlines).")
@click.option("--new-only", is_flag=True, help="A model of items: leave out items that are in its training file.")
@json_option
@threads_option
def generate(checkpoint_path, prime, length, stop, sampler_spec, temperature, repetition_penalty,
             repetition_window, seed, skip_unknown, num_samples, new_only, as_json, threads):
    """Continue a prime with a trained model; prints the prime and what follows.

    One sample is printed as it is generated; several are printed one after another, each
    on its own line, so a sample that holds a newline runs into the next: --json prints one
    JSON object per sample per line, {"prime": ..., "text": ...} (text: what was generated).

    A model trained on items (--corpus lines:PATH) prints whole new items, one per line,
    each from a fresh start to where the model ends it (--length caps it); a --prime starts
    each of them, and --new-only leaves out those in the training file.

    \b
    Examples:
      charseq generate alphabet.npz --prime ABCDEF --length 20 --sampler argmax
      charseq generate novel.npz --prime "The " --sampler top-p:p=0.9 --temperature 0.8 --stop "\n\n"
      charseq generate names.npz --num-samples 20 --new-only
    """
    saved = charseq.load(checkpoint_path)
    asked = Decoding(sampler_spec, {}, temperature, length, num_samples, () if stop is None else (stop,),
                     repetition_penalty, repetition_window, skip_unknown)
    decoding = asked.built()  # a sampler's bad options, and the warnings, before anything is printed
    rng = np.random.default_rng(seed)
    if saved.item_end is not None:
        return _generate_items(saved, decoding, prime or "", rng, new_only, as_json, threads, asked)
    if new_only:
        raise UsageError("--new-only is for a model trained on items (--corpus lines:PATH); this one was trained "
                         "on running text")
    if prime is None:
        prime = saved.vocab.symbols[rng.integers(len(saved.vocab))]
    prime = decoding.known_prime(prime, saved.vocab)
    pieces = generation.stream(saved.model, saved.vocab, prime, rng=rng, decoding=decoding)
    if sys.stdout is None:
        raise UsageError("standard output is closed; there is nowhere to print the text")
    line_open = False  # a sample's line is on stdout, not yet ended
    try:
        with blas.limited(threads):
            if as_json:
                texts: list[list[str]] = [[] for _ in range(num_samples)]
                for step in pieces:
                    for text, piece in zip(texts, step):
                        text.append(piece)
                for text in texts:
                    say(_json_line({"prime": prime, "text": "".join(text)}), essential=True)
            elif num_samples == 1:
                out = sys.stdout
                first = next(pieces)  # fails early on bad arguments, before anything is printed
                line_open = True
                out.write(prime + first[0])
                out.flush()
                for step in pieces:
                    out.write(step[0])
                    out.flush()
                out.write("\n")
                line_open = False
                out.flush()
            else:
                texts = [[] for _ in range(num_samples)]
                for step in pieces:
                    for text, piece in zip(texts, step):
                        text.append(piece)
                for text in texts:
                    click.echo(prime + "".join(text))
    except BrokenPipeError:  # `charseq generate ... | head`: the reader has what it wanted
        _drop_output(sys.stdout)
    except KeyboardInterrupt:  # Ctrl-C mid-sample: end its line, so that the message and the prompt get their own
        if line_open:
            say("")
        raise
    except OSError as exc:  # a full disk, /dev/full
        _drop_output(sys.stdout)
        raise CharseqError(f"cannot write the text to standard output: {exc.strerror or exc}") from None
    except SamplerError as exc:
        raise _misbehaved(asked, exc) from None


def _misbehaved(decoding: Decoding, exc: SamplerError) -> CharseqError:
    """A sampler's fault, named with the plugin that registered it."""
    name = "argmax" if decoding.greedy else parse_spec(str(decoding.sampler))[0]
    return CharseqError(f"sampler {name!r} of {get_registry().describe(get_registry().get('sampler', name).plugin)} "
                        f"misbehaved: {exc}")


def _generate_items(saved, decoding: Decoding, prime: str, rng, new_only: bool, as_json: bool, threads,
                    asked: Decoding) -> None:
    """`generate` for a model of items: whole new items, one per line."""
    if prime:
        prime = decoding.known_prime(prime, saved.vocab)
    exclude = saved.seen_items if new_only else None
    if new_only and exclude is None:
        raise UsageError("this checkpoint does not record its training items, so --new-only cannot leave them out")
    try:
        with blas.limited(threads):
            items = generation.generate_items(saved.model, saved.vocab, saved.item_end, decoding, prime=prime, rng=rng,
                                   exclude=exclude)
    except SamplerError as exc:
        raise _misbehaved(asked, exc) from None
    for item in items:
        say(_json_line({"prime": prime, "text": item}) if as_json else prime + item, essential=True)


_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_line(value: object) -> str:
    """One JSON object on one line, also for readers that split lines where Python's
    str.splitlines() does (JSON escapes every other character that would break it)."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in _LINE_BREAKS.items():
        text = text.replace(char, escaped)
    return text


@cli.command(name="eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--corpus", "corpus_spec", required=True, metavar="NAME[:ARG]", shell_complete=_complete_names("corpus"),
              help="The text to evaluate on: text:PATH, or any corpus.")
@click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
@exact_text_option
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Parallel streams.")
@click.option("--seq-len", type=click.IntRange(min=1), default=64, show_default=True, help="Characters per window.")
@json_option
@threads_option
def evaluate_command(checkpoint_path, corpus_spec, encoding, exact_text, batch_size, seq_len, as_json, threads):
    """Print a checkpoint's loss on a corpus: nats and bits per character, and perplexity.

    A corpus of items (lines:PATH) is scored item by item, each from a fresh state, the
    end of each counted as a character (as training's validation loss is)."""
    from charseq.training.evaluation import evaluate, loss_metrics
    from charseq.data.items import evaluate_items

    saved = charseq.load(checkpoint_path)
    corpus = charseq.get_corpus(corpus_spec, **_corpus_options(encoding, exact_text))
    unknown = saved.vocab.unknown(corpus.vocab.symbols)
    if unknown:
        raise UsageError(f"corpus {corpus.name!r} has {counted(len(unknown), 'character')} the model does not know: "
                         f"{show_characters(unknown)}")
    # The corpus's ids are in its own vocabulary: map them to the model's.
    mapping = np.array([saved.vocab.symbols.index(c) for c in corpus.vocab.symbols], dtype=saved.vocab.dtype)
    with blas.limited(threads):
        if corpus.item_starts is not None:  # items: each from a fresh state, its end counted
            loss = evaluate_items(saved.model, mapping[corpus.ids], corpus.item_starts)
        else:
            loss = evaluate(saved.model, mapping[corpus.ids], batch_size, seq_len)
    if not np.isfinite(loss):
        from charseq.models.build import model_label

        raise CharseqError(f"the loss of {model_label(saved.model.name)} on {corpus.name!r} is {loss}, not a number")
    metrics = {"corpus": corpus.name, "characters": len(corpus), **loss_metrics(loss)}
    if as_json:
        say(json.dumps(metrics), essential=True)
    else:
        say(f"{corpus.name}: {counted(len(corpus), 'character')}, loss {loss:.4f} nats/char, "
            f"{metrics['bpc']:.4f} bits/char, perplexity {metrics['perplexity']:.3f}", essential=True)


@cli.command()
@click.argument("metrics_path", metavar="METRICS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="loss.png", show_default=True,
              help="The picture to write (PNG, SVG or PDF by its suffix); one it drew before is replaced.")
@click.option("--force", is_flag=True, help="Replace a file at -o that this command did not draw (never charseq's "
                                            "checkpoints or metrics).")
def plot(metrics_path, out, force):
    """Draw the training and validation loss of a --metrics file."""
    from charseq.cli.plot import plot_metrics

    if out.endswith(os.sep) or out.endswith(os.sep + "."):
        raise UsageError(f"-o {out!r} names a directory; give a picture's file name")
    plot_metrics(metrics_path, out, force)
    say(f"wrote {out}")


# -- the text cache -------------------------------------------------------------------

_DECIDED_BY = {"CHARSEQ_CACHE": "set by CHARSEQ_CACHE", "XDG_CACHE_HOME": "under XDG_CACHE_HOME",
               "default": "the default, ~/.cache/charseq; CHARSEQ_CACHE or XDG_CACHE_HOME moves it",
               "fallback": "the default place cannot be used; set CHARSEQ_CACHE"}


@cli.command()
@click.option("--clear", is_flag=True, help="Delete the cache's entries (only the files charseq can vouch it wrote).")
@json_option
def cache(clear, as_json):
    """Show where the text cache is and what it holds: each entry's size, characters and source files."""
    from charseq.data.cache import cache_report, clear_cache

    if clear:
        report, freed = clear_cache()
        if as_json:
            say(json.dumps({"directory": str(report.directory), "entries": _vouched(report), "freed_bytes": freed,
                            "left": len(report.unvouched)}), essential=True)
        else:
            say(f"cleared {report.directory}: {_entries(report)}, {_bytes(freed)} freed{_left(report, 'left')}",
                essential=True)
        return
    report = cache_report()
    if as_json:
        say(json.dumps({"directory": str(report.directory), "decided_by": report.decided_by,
                        "entries": [vars(entry) for entry in report.entries], "total_bytes": report.total_size,
                        "unvouched": [str(path) for path in report.unvouched]}, indent=2), essential=True)
        return
    say(f"cache: {report.directory} ({_DECIDED_BY[report.decided_by]})", essential=True)
    for entry in report.entries:
        characters = counted(entry.characters, "character") if entry.characters is not None else "incomplete"
        sources = entry.sources or ["source unknown"]
        more = f" and {counted(len(sources) - 1, 'more file')}" if len(sources) > 1 else ""
        unvouched = "" if entry.verified else "not charseq's (or an earlier release's): "
        say(f"{_bytes(entry.size):>9}  {characters:>20}  {unvouched}{sources[0]}{more}", essential=True)
    say(f"{_entries(report)}, {_bytes(report.total_size)} in all{_left(report, 'left alone by --clear')}",
        essential=True)


def _vouched(report) -> int:
    return sum(entry.verified for entry in report.entries)


def _entries(report) -> str:
    count = _vouched(report)
    return f"{count:,} entr{'y' if count == 1 else 'ies'}"


def _left(report, what: str) -> str:
    """The files named like charseq's that it cannot vouch for, when there are any."""
    if not report.unvouched:
        return ""
    return (f"; {what}: {counted(len(report.unvouched), 'file')} named like charseq's that it cannot vouch for "
            "(an earlier release's, or not charseq's: delete them yourself if they are yours to delete)")


def _bytes(size: float) -> str:
    """A size for people: 512 B, 1.2 kB, 3.4 MB (powers of 1000, as the README's tables)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


# -- listings -----------------------------------------------------------------------


@cli.command()
@json_option
def plugins(as_json):
    """List loaded plugins: name, package, version and what each registers."""
    cli._add_plugin_commands()  # refuses plugin commands that take built-in names, before listing them
    infos = get_registry().plugins()
    if as_json:
        say(json.dumps([{"name": info.name, "package": info.package, "version": info.version,
                         "registers": info.registers} for info in infos], indent=2), essential=True)
        return
    for info in infos:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registers.items())
        say(f"{info.name} ({info.package} {info.version})  {provides or 'nothing registered'}", essential=True)


def _listing(kind: str):
    def command(as_json):
        items = get_registry().all(kind)
        if as_json:
            say(json.dumps([{"name": n, "help": i.help, "plugin": i.plugin, "options": [o.to_json() for o in i.options()]}
                            for n, i in items.items()], indent=2), essential=True)
            return
        width = max((len(name) for name in items), default=0)
        for name, item in items.items():
            say(f"{name:<{width}}  {item.help}  [{item.plugin}]", essential=True)
            for line in _option_lines(item, indent=width + 2):
                say(line, essential=True)

    return json_option(command)


def _option_lines(item, indent: int) -> list[str]:
    """An item's options under its line, aligned with its help: `k=40  how many ...`."""
    from charseq.hooks.options import OptionInfo, shown_value

    options = [(f"{o.name} (required)" if o.default is OptionInfo.REQUIRED else f"{o.name}={shown_value(o.default)}",
                o.help) for o in item.options()]
    if item.takes_any():
        options.append(("...", "any other key=value: its factory takes them all"))
    width = max((len(shown) for shown, _ in options), default=0)
    return [f"{' ' * indent}{shown:<{width}}  {help}".rstrip() for shown, help in options]


for _kind, _name in (("corpus", "corpora"), ("sampler", "samplers"), ("callback", "callbacks"), ("model", "models")):
    cli.command(name=_name, help=f"List the available {_name}, one per line, each with its options and their "
                                 "defaults below it.")(_listing(_kind))
