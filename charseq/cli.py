"""The `charseq` command: a thin shell over the core's Run, generation and listings.

What a run is, how it resumes, what it may write and how it fails live in the core
(run.py); this module turns options into calls and results into lines and exit codes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import click
import numpy as np

import charseq
from charseq import config as settings_table
from charseq.errors import CharseqError, CharseqWarning, UsageError
from charseq.files import shown
from charseq.interrupt import Aborted
from charseq.registry import get_registry, model_spec, parse_options, parse_spec
from charseq.vocab import show_characters


class _Failure(click.ClickException):
    """A CharseqError on its way out: one line on stderr, exit 1 or 2."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def threads_option(command):
    """--threads N: how many threads BLAS may use for the command's matmuls."""
    return click.option(
        "--threads", type=click.IntRange(min=1), default=_available_cores, show_default="all cores",
        help="BLAS threads for the matrix products.",
    )(command)


@contextlib.contextmanager
def _blas_threads(threads: int):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


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
            self.commands[name] = registered.factory
        self._plugin_commands = (registry, frozenset(commands))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with Ctrl-C anywhere (parsing, loading plugins, training) ending
        quietly with 130 where click would print "Aborted!" and exit 1."""
        with warnings.catch_warnings():
            others = warnings.showwarning

            def show(message, category, *rest, **options):
                """charseq's warnings as one line on stderr, like its errors; others as Python shows them."""
                if issubclass(category, CharseqWarning):
                    say(f"charseq: warning: {message}", err=True)
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
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None

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
        except KeyboardInterrupt:  # Ctrl-C while starting up, loading or generating
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
            raise _Failure(f"{what}: {detail} (run with --debug for the traceback)", 1) from None


def _one_line(exc: click.UsageError) -> click.ClickException:
    """Click's usage errors as one line, like every other error, pointing to --help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `charseq` alone shows the help
        return exc
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
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
              help="What to train on: alphabet, digits, text:PATH, or a plugin's corpus.  [required unless --resume]")
@click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
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
              help="Stop after this many epochs without improvement (of val_loss, else loss): the "
                   "`early-stopping` callback.")
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
@click.option("--sample-length", type=click.IntRange(min=0), default=20, show_default=True,
              help="Characters of the sample continuation printed at the end (0: none).")
@click.option("--progress/--no-progress", default=None,
              help="Draw the progress bar on stderr.  [default: when stderr is a terminal]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or epoch lines.")
@threads_option
def train(corpus_spec, encoding, model_spec, resume_path, out, force, metrics_path, patience, min_delta, restore_best,
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
      charseq train --resume novel.npz --epochs 30
    """
    from charseq.run import Run

    callbacks = _shortcut_callbacks(metrics_path, patience, min_delta, restore_best, checkpoint_every)
    callbacks += list(callback_specs)
    corpus_options = {} if encoding is None else {"encoding": encoding}
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
        with _blas_threads(threads):
            result = run.fit()
    finally:  # an interrupted or failed run gets no on_train_end: clear the bar for the message
        for bar in extra:
            bar.close()
    if result.status == "interrupted":
        say(result.message, err=True)
        sys.exit(result.exit_code)
    say(result.message)
    if sample_length > 0 and result.status != "complete":
        _print_sample(run, sample_length)


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
    from charseq.progress import ProgressBar

    if sys.stderr is None:  # closed (2>&-): nowhere to draw
        draw = False
    return ProgressBar(draw=draw, write=say)


def _describe_run(run) -> None:
    config, trainer, corpus = run.config, run.trainer, run.corpus
    held_out = f", {len(trainer.val_ids):,} held out" if trainer.val_ids is not None else ""
    clipping = ", ".join(f"{name}={value:g}" for name, value in (("clip", config.clip), ("clip-norm", config.clip_norm))
                         if value) or "no clipping"
    dropout = f" dropout={config.dropout:g}" if config.dropout else ""
    dropout += f" input-lr-scale={config.input_lr_scale:g}" if config.input_lr_scale != 1 else ""
    say(f"training on {corpus.name}: {len(corpus):,} characters{held_out}, {len(corpus.vocab)} symbols, "
        f"{model_spec(run.spec.model['name'], run.spec.model.get('options', {}))} H={config.hidden_size} T={config.seq_len} B={config.batch_size} {config.optimizer} lr={config.lr:g} "
        f"{clipping}{dropout} warmup={config.warmup} epochs={config.epochs}")
    if run.resumed_path is not None:
        say(f"resuming from {run.resumed_path} at step {trainer.step:,} (epoch {trainer.epoch + 1}, "
            f"step {trainer.step_in_epoch} of {trainer.steps_per_epoch}); saving to {shown(run.out)}")


def _print_sample(run, length: int) -> None:
    """The opening of the corpus and the model's argmax continuation, marked apart."""
    prime = run.corpus.prime(run.config.seq_len)
    continuation = charseq.generate(run.model, run.corpus.vocab, prime, length, charseq.get_sampler("argmax"))[0]
    say(f"sample: {prime}{continuation}")


# -- generate ---------------------------------------------------------------------


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--prime", help="Text to continue.  [default: one random symbol]")
@click.option("--length", "--max-length", "length", type=click.IntRange(min=0), default=200, show_default=True,
              help="Characters to generate at most.")
@click.option("--stop", help="End a sample where this text appears (it is not printed).")
@click.option("--sampler", "sampler_spec", default="temperature", show_default=True, metavar="NAME[:KEY=VALUE,...]",
              shell_complete=_complete_names("sampler"), help="How to pick each character; see `charseq samplers`.")
@click.option("--temperature", type=float, help="Sampling temperature (> 0), for samplers that take one.")
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True,
              help="Above 1, makes symbols already used less likely.")
@click.option("--repetition-window", type=int, metavar="N",
              help="Count only the last N characters as used.  [default: all]")
@click.option("--seed", type=click.IntRange(min=0), help="Makes sampling reproducible.")
@click.option("--skip-unknown", is_flag=True, help="Leave out prime characters the model does not know.")
@click.option("--num-samples", type=int, default=1, show_default=True, help="Continuations, in one batch.")
@threads_option
def generate(checkpoint_path, prime, length, stop, sampler_spec, temperature, repetition_penalty,
             repetition_window, seed, skip_unknown, num_samples, threads):
    """Continue a prime with a trained model; prints the prime and what follows.

    One sample is printed as it is generated; several are printed one after another,
    each on its own line.

    \b
    Examples:
      charseq generate alphabet.npz --prime ABCDEF --length 20 --sampler argmax
      charseq generate novel.npz --prime "The " --sampler top-p:p=0.9 --temperature 0.8 --stop "\n\n"
    """
    from charseq.generation import SamplerError, stream

    saved = charseq.load(checkpoint_path)
    name, arg = parse_spec(sampler_spec)
    options = parse_options(arg)
    if temperature is not None:
        options["temperature"] = temperature
    registered = get_registry().get("sampler", name)
    sampler = registered.build(**options)
    rng = np.random.default_rng(seed)
    if prime is None:
        prime = saved.vocab.symbols[rng.integers(len(saved.vocab))]
    prime = _known_part(prime, saved.vocab, skip_unknown)
    pieces = stream(saved.model, saved.vocab, prime, length, sampler, rng, num_samples, stop,
                    repetition_penalty, repetition_window)
    if sys.stdout is None:
        raise UsageError("standard output is closed; there is nowhere to print the text")
    try:
        with _blas_threads(threads):
            if num_samples == 1:
                out = sys.stdout
                first = next(pieces)  # fails early on bad arguments, before anything is printed
                out.write(prime + first[0])
                out.flush()
                for piece in pieces:
                    out.write(piece[0])
                    out.flush()
                out.write("\n")
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
    except OSError as exc:  # a full disk, /dev/full
        _drop_output(sys.stdout)
        raise CharseqError(f"cannot write the text to standard output: {exc.strerror or exc}") from None
    except SamplerError as exc:
        raise CharseqError(f"sampler {name!r} of {get_registry().describe(registered.plugin)} misbehaved: {exc}") \
            from None


def _known_part(prime: str, vocab, skip_unknown: bool) -> str:
    """The prime, or with --skip-unknown its characters the model knows; others are named."""
    unknown = vocab.unknown(prime)
    if not unknown:
        return prime
    shown = show_characters(unknown)
    if not skip_unknown:
        raise UsageError(f"the prime has {len(unknown)} character(s) not in the model's vocabulary: {shown}; "
                         "--skip-unknown leaves them out")
    kept = "".join(c for c in prime if c in vocab)
    if not kept:
        raise UsageError(f"no character of the prime is in the model's vocabulary (it has {shown})")
    say(f"charseq: left out {len(unknown)} unknown character(s) of the prime: {shown}", err=True)
    return kept


@cli.command(name="eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--corpus", "corpus_spec", required=True, metavar="NAME[:ARG]", shell_complete=_complete_names("corpus"),
              help="The text to evaluate on: text:PATH, or any corpus.")
@click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Parallel streams.")
@click.option("--seq-len", type=click.IntRange(min=1), default=64, show_default=True, help="Characters per window.")
@json_option
@threads_option
def evaluate_command(checkpoint_path, corpus_spec, encoding, batch_size, seq_len, as_json, threads):
    """Print a checkpoint's loss on a corpus: nats and bits per character, and perplexity."""
    from charseq.evaluation import evaluate, loss_metrics

    saved = charseq.load(checkpoint_path)
    corpus = charseq.get_corpus(corpus_spec, **({} if encoding is None else {"encoding": encoding}))
    unknown = saved.vocab.unknown(corpus.vocab.symbols)
    if unknown:
        raise UsageError(f"corpus {corpus.name!r} has {len(unknown)} character(s) the model does not know: "
                         f"{show_characters(unknown)}")
    # The corpus's ids are in its own vocabulary: map them to the model's.
    mapping = np.array([saved.vocab.symbols.index(c) for c in corpus.vocab.symbols], dtype=saved.vocab.dtype)
    with _blas_threads(threads):
        loss = evaluate(saved.model, mapping[corpus.ids], batch_size, seq_len)
    if not np.isfinite(loss):
        from charseq.registry import model_label

        raise CharseqError(f"the loss of {model_label(saved.model.name)} on {corpus.name!r} is {loss}, not a number")
    metrics = {"corpus": corpus.name, "characters": len(corpus), **loss_metrics(loss)}
    if as_json:
        say(json.dumps(metrics), essential=True)
    else:
        say(f"{corpus.name}: {len(corpus):,} characters, loss {loss:.4f} nats/char, "
            f"{metrics['bpc']:.4f} bits/char, perplexity {metrics['perplexity']:.3f}", essential=True)


@cli.command()
@click.argument("metrics_path", metavar="METRICS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="loss.png", show_default=True,
              help="The picture to write (PNG, SVG or PDF by its suffix); a picture there is replaced.")
def plot(metrics_path, out):
    """Draw the training and validation loss of a --metrics file."""
    from charseq.plot import plot_metrics

    if out.endswith(os.sep) or out.endswith(os.sep + "."):
        raise UsageError(f"-o {out!r} names a directory; give a picture's file name")
    plot_metrics(metrics_path, Path(out))
    say(f"wrote {out}")


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
            say(json.dumps([{"name": n, "help": i.help, "plugin": i.plugin} for n, i in items.items()], indent=2),
                essential=True)
            return
        width = max((len(name) for name in items), default=0)
        for name, item in items.items():
            say(f"{name:<{width}}  {item.help}  [{item.plugin}]", essential=True)

    return json_option(command)


for _kind, _name in (("corpus", "corpora"), ("sampler", "samplers"), ("callback", "callbacks"), ("model", "models")):
    cli.command(name=_name, help=f"List the available {_name}, one per line.")(_listing(_kind))
