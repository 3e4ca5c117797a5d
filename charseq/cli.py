"""The `charseq` command: train, generate, and list what plugins provide."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path

import click
import numpy as np

import charseq
from charseq.errors import CharseqError, PluginWarning, UsageError
from charseq.optimizers import OPTIMIZERS as OPTIMIZER_NAMES
from charseq.registry import get_registry, parse_options, parse_spec
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


class _CharseqGroup(click.Group):
    """Turns CharseqError into one line, and adds the commands plugins register, on demand:
    running a built-in command never loads plugins."""

    # The registry the plugin commands came from, and which plugin added each command.
    _plugin_commands: tuple[object, dict[str, str]] = (None, {})

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
        added: dict[str, str] = {}
        for impl in reversed(registry.plugin_manager.hook.register_commands.get_hookimpls()):
            before = dict(self.commands)
            try:
                impl.function(cli=self)
            except Exception as exc:
                self.commands = before
                warnings.warn(f"{registry.describe(impl.plugin_name)} raised in register_commands "
                              f"({type(exc).__name__}: {exc}); its commands are skipped", PluginWarning)
                continue
            for name, command in list(self.commands.items()):
                if name in before and before[name] is not command:
                    self.commands[name] = before[name]
                    warnings.warn(f"{registry.describe(impl.plugin_name)} registered command {name!r}, which is "
                                  "taken; the first one is kept", PluginWarning)
                elif name not in before:
                    added[name] = impl.plugin_name
        self._plugin_commands = (registry, added)

    def main(self, *args, **kwargs):
        with warnings.catch_warnings():
            others = warnings.showwarning

            def show(message, category, *rest, **options):
                """Plugin warnings as one line on stderr, like the errors; others as Python shows them."""
                if issubclass(category, PluginWarning):
                    click.echo(f"charseq: warning: {message}", err=True)
                else:
                    others(message, category, *rest, **options)

            warnings.showwarning = show
            return super().main(*args, **kwargs)

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
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            culprit = _plugin_in_traceback(exc)
            what = f"{culprit} failed" if culprit else "internal error"
            saved = f"; {exc.charseq_saved}" if hasattr(exc, "charseq_saved") else ""
            raise _Failure(f"{what}: {detail}{saved} (run with --debug for the traceback)", 1) from None


def _one_line(exc: click.UsageError) -> click.ClickException:
    """Click's usage errors as one line, like every other error, pointing to --help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `charseq` alone shows the help
        return exc
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _Failure(exc.format_message() + hint, exc.exit_code)


def _plugin_in_traceback(exc: BaseException) -> str | None:
    """The installed plugin whose code raised `exc`, described for a message, if any."""
    registry = get_registry.cache_info().currsize and get_registry()
    if not registry:
        return None
    modules = {}
    for name, plugin in registry.plugin_manager.list_name_plugin():
        module = getattr(plugin, "__name__", None) or type(plugin).__module__
        if module and not module.startswith("charseq."):
            modules[module.split(".")[0]] = name
    traceback = exc.__traceback__
    culprit = None
    while traceback is not None:  # the innermost plugin frame wins
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module.split(".")[0] in modules:
            culprit = modules[module.split(".")[0]]
        traceback = traceback.tb_next
    return registry.describe(culprit) if culprit else None


@click.group(cls=_CharseqGroup)
@click.version_option(charseq.__version__, prog_name="charseq")
@click.option("--debug", is_flag=True, help="Show the full traceback of unexpected errors.")
def cli(debug: bool) -> None:
    """Character-level text generation with a vanilla RNN, extended by plugins."""


# -- train ----------------------------------------------------------------------


@cli.command()
@click.option("--corpus", "corpus_spec", metavar="NAME[:ARG]", shell_complete=_complete_names("corpus"),
              help="What to train on: alphabet, digits, text:PATH, or a plugin's corpus.  [required unless --resume]")
@click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
@click.option("--resume", "resume_path", type=click.Path(path_type=Path), metavar="CHECKPOINT",
              help="Continue the run a checkpoint was saved from, exactly; only --epochs and --eval-every may change.")
@click.option("--hidden-size", type=int, help="Hidden units H.")
@click.option("--seq-len", type=int, help="Characters per training window T.")
@click.option("--batch-size", type=int, help="Windows (text: parallel streams) per step B.")
@click.option("--epochs", type=int, help="Passes over the training text.")
@click.option("--optimizer", type=click.Choice(sorted(OPTIMIZER_NAMES)), help="The update rule.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--input-lr-scale", type=float, help="Steps of the input weights U, as a multiple of the rest's.")
@click.option("--dropout", type=float, help="Drop each hidden unit on its way to the output with this probability.")
@click.option("--clip", type=float, help="Clip each gradient element to +-CLIP (0: off).")
@click.option("--clip-norm", type=float, help="Scale the gradient down to this global norm (0: off).")
@click.option("--warmup", type=int, metavar="STEPS", help="Raise the learning rate linearly over the first STEPS steps.")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine"]), help="The learning rate after warmup.")
@click.option("--lr-decay", type=float, help="step schedule: multiply the rate by this ...")
@click.option("--lr-decay-every", type=int, metavar="EPOCHS", help="... every EPOCHS epochs.")
@click.option("--min-lr", type=float, help="cosine schedule: the rate it ends at.")
@click.option("--val-fraction", type=float, help="Share of a text held out, from its end, for validation.")
@click.option("--max-val-chars", type=int, help="Hold out at most this many characters.  [default: 1,000,000]")
@click.option("--eval-every", type=int, metavar="STEPS", help="Also evaluate every STEPS steps (0: at epoch ends).")
@click.option("--seed", type=int, help="Seeds initialisation and data order.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to save the checkpoint.  [default: CORPUS.npz, or the --resume checkpoint]")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one JSON line per evaluation to this file.")
@click.option("--patience", type=int, help="Stop after N evaluations without improvement (of val_loss, else loss).")
@click.option("--min-delta", type=float, default=0.0, show_default=True,
              help="The smallest change that counts as improvement.")
@click.option("--restore-best/--no-restore-best", default=True, show_default=True,
              help="With --patience, end with the best weights seen.")
@click.option("--checkpoint-every", type=int, metavar="N", help="Also save --out every N epochs (0: only at the end).")
@click.option("--callback", "callback_specs", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              shell_complete=_complete_names("callback"),
              help="Add a training callback by name (repeatable); see `charseq callbacks`.")
@click.option("--sample-length", type=int, default=20, show_default=True,
              help="Characters of the sample continuation printed at the end (0: none).")
@click.option("--progress/--no-progress", default=None,
              help="Draw the progress bar on stderr.  [default: when stderr is a terminal]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or epoch lines.")
@threads_option
def train(corpus_spec, encoding, resume_path, out, metrics_path, patience, min_delta, restore_best, checkpoint_every,
          callback_specs, sample_length, progress, quiet, threads, **settings):
    """Train a model on a corpus and save a checkpoint.

    Settings left out come from the corpus's suggestions (see the README), then from the
    text defaults: H=512, T=128, B=32, Adam at 2e-3 (U's steps 80 times larger) with a
    cosine schedule over 20 epochs, dropout 0.2, gradient norm clipped at 5.

    Ctrl-C or SIGTERM saves a checkpoint at the next step and exits (130 or 143);
    `--resume` continues it. A second Ctrl-C aborts at once, leaving the last checkpoint
    as it was.

    \b
    Examples:
      charseq train --corpus alphabet
      charseq train --corpus text:novel.txt --metrics novel.jsonl --out novel.npz
      charseq train --resume novel.npz
    """
    from charseq import Trainer, TrainConfig, VanillaRNN, checkpoint
    from charseq import generate as generate_text
    from charseq.interrupt import exit_code, stop_on_signals
    from charseq.progress import ProgressBar

    registry = get_registry()
    resumed = checkpoint.load(resume_path) if resume_path is not None else None
    if resumed is not None:
        corpus_spec, encoding = _resumed_corpus(resumed, corpus_spec, encoding)
        config = _resumed_config(resumed, settings)
        out = out or resume_path
    elif corpus_spec is None:
        raise UsageError("missing option --corpus (or --resume CHECKPOINT); see charseq train --help")
    corpus = _load_corpus(registry, corpus_spec, encoding)
    if resumed is None:
        config = TrainConfig.for_corpus(corpus, **settings)
    out = out or Path(f"{corpus.name}.npz")
    _check_writable(out)
    if metrics_path is not None:
        _check_writable(metrics_path)
    if checkpoint_every is not None and checkpoint_every < 0:
        raise UsageError(f"checkpoint-every must be 0 or more, got {checkpoint_every}")

    callbacks: list[object] = []
    if not quiet:
        callbacks.append(ProgressBar(draw=progress))
    if metrics_path is not None:
        callbacks.append(registry.get("callback", "metrics").build(path=str(metrics_path)))
    if patience is not None:
        callbacks.append(registry.get("callback", "early-stopping").build(
            patience=patience, min_delta=min_delta, restore_best_weights=restore_best))
    if checkpoint_every:
        callbacks.append(registry.get("callback", "checkpoint").build(path=str(out), every=checkpoint_every))
    for spec in callback_specs:
        callback_name, callback_arg = parse_spec(spec)
        callbacks.append(registry.get("callback", callback_name).build(**parse_options(callback_arg)))

    model = VanillaRNN(len(corpus.vocab), config.hidden_size, seed=config.seed)
    trainer = Trainer(model, corpus, config, callbacks)
    if resumed is not None:
        trainer.restore(resumed)
    if not quiet:
        held_out = f", {len(trainer.val_ids):,} held out" if trainer.val_ids is not None else ""
        clipping = ", ".join(f"{name}={value:g}" for name, value in (("clip", config.clip), ("clip-norm", config.clip_norm))
                             if value) or "no clipping"
        dropout = f" dropout={config.dropout:g}" if config.dropout else ""
        dropout += f" input-lr-scale={config.input_lr_scale:g}" if config.input_lr_scale != 1 else ""
        click.echo(
            f"training on {corpus.name}: {len(corpus):,} characters{held_out}, {len(corpus.vocab)} symbols, "
            f"H={config.hidden_size} T={config.seq_len} B={config.batch_size} {config.optimizer} lr={config.lr:g} "
            f"{clipping}{dropout} warmup={config.warmup} epochs={config.epochs}"
        )
        if resumed is not None:
            click.echo(f"resuming from {resume_path} at step {trainer.step:,} (epoch {trainer.epoch + 1}, "
                       f"step {trainer.step_in_epoch} of {trainer.steps_per_epoch})")
    first_step = trainer.step
    try:
        with _blas_threads(threads), stop_on_signals(trainer):
            try:
                metrics = trainer.fit()
            except Exception as exc:
                _save_after_plugin_failure(exc, trainer, first_step, out)
                raise
            finally:  # an interrupted or failed run gets no on_train_end: clear the bar for the message
                for callback in callbacks:
                    if isinstance(callback, ProgressBar):
                        callback.close()
            interrupted = trainer.interrupted  # a signal during the save below ends nothing early
            checkpoint.save(out, trainer.to_checkpoint())
    except KeyboardInterrupt:
        kept = f"; {out} keeps its last whole checkpoint" if out.exists() else ", without saving"
        click.echo(f"aborted at step {trainer.step:,}{kept}", err=True)
        sys.exit(exit_code(signal.SIGINT))
    if interrupted is not None:
        click.echo(f"interrupted at step {trainer.step:,} (epoch {trainer.epoch + 1}, step {trainer.step_in_epoch} of "
                   f"{trainer.steps_per_epoch}); saved {out}; continue with: charseq train --resume {out}", err=True)
        sys.exit(exit_code(interrupted))
    validation = f", validation {metrics['val_loss']:.4g}" if "val_loss" in metrics else ""
    click.echo(f"saved {out} after {trainer.epoch} epochs, loss {metrics['loss']:.4g}{validation} nats/char")
    if sample_length > 0:
        prime = corpus.prime(config.seq_len)
        argmax = registry.get("sampler", "argmax").build()
        continuation = generate_text(model, corpus.vocab, prime, sample_length, argmax)[0]
        click.echo(f"sample: {prime}{continuation}")


def _save_after_plugin_failure(exc: Exception, trainer, first_step: int, out: Path) -> None:
    """A plugin's callback that raises mid-run does so between two steps: save the run, so
    that it costs nothing, and say so in the error. Failures of charseq's own are not saved
    over the last checkpoint, since the state they leave is not vouched for."""
    from charseq import checkpoint

    culprit = _plugin_in_traceback(exc)
    if isinstance(exc, CharseqError) or culprit is None or trainer.step == first_step:
        return
    checkpoint.save(out, trainer.to_checkpoint())
    exc.charseq_saved = (f"saved {out} at step {trainer.step:,}; continue with: charseq train --resume {out} "
                         "(without that callback)")  # for the one-line message; add_note needs 3.11


# Settings a resumed run may change, neither undoing what is trained: --epochs lengthens or
# shortens the run (and with it what remains of a cosine schedule), --eval-every only moves
# evaluations. Any other change would make it a different run.
RESUME_MAY_CHANGE = ("epochs", "eval_every")


def _resumed_config(resumed, settings: dict):
    """The checkpoint's settings; refusing a change that would make the resumed run another run."""
    from charseq import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    config = {key: value for key, value in resumed.config.items() if key in known}
    for key, value in settings.items():
        if value is None or key not in config or value == config[key]:
            continue
        if key not in RESUME_MAY_CHANGE:
            raise UsageError(
                f"--{key.replace('_', '-')} {value} differs from the resumed run's {config[key]}; a resumed run keeps "
                f"its settings (only --epochs and --eval-every may change)"
            )
        config[key] = value
    return TrainConfig(**config)


def _resumed_corpus(resumed, corpus_spec: str | None, encoding: str | None) -> tuple[str, str | None]:
    if corpus_spec is not None:
        return corpus_spec, encoding
    if not resumed.corpus_spec:
        raise UsageError("the checkpoint does not record its corpus; give it with --corpus")
    return resumed.corpus_spec, encoding if encoding is not None else resumed.corpus_options.get("encoding")


def _load_corpus(registry, spec: str, encoding: str | None):
    name, arg = parse_spec(spec)
    options = {} if encoding is None else {"encoding": encoding}
    corpus = registry.get("corpus", name).build(arg, **options)
    corpus.spec, corpus.spec_options = spec, options  # recorded in checkpoints, for --resume
    return corpus


def _check_writable(out: Path) -> None:
    """Fail before training, not after, when the checkpoint cannot be written."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"output directory {str(directory)!r} does not exist")
    if out.is_dir():
        raise UsageError(f"{str(out)!r} is a directory; give a file name")
    # Creating a file is the only sure test: permission bits do not stop root, and do
    # not show a read-only file system.
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"output directory {str(directory)!r} is not writable ({exc.strerror})") from None


# -- generate ---------------------------------------------------------------------


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--prime", help="Text to continue.  [default: one random symbol]")
@click.option("--length", "--max-length", "length", type=int, default=200, show_default=True,
              help="Characters to generate at most.")
@click.option("--stop", help="End a sample where this text appears (it is not printed).")
@click.option("--sampler", "sampler_spec", default="temperature", show_default=True, metavar="NAME[:KEY=VALUE,...]",
              shell_complete=_complete_names("sampler"), help="How to pick each character; see `charseq samplers`.")
@click.option("--temperature", type=float, help="Sampling temperature (> 0), for samplers that take one.")
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True,
              help="Above 1, makes symbols already used less likely.")
@click.option("--repetition-window", type=int, metavar="N",
              help="Count only the last N characters as used.  [default: all]")
@click.option("--seed", type=int, help="Makes sampling reproducible.")
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
    from charseq import checkpoint
    from charseq.generate import stream

    saved = checkpoint.load(checkpoint_path)
    name, arg = parse_spec(sampler_spec)
    options = parse_options(arg)
    if temperature is not None:
        options["temperature"] = temperature
    sampler = get_registry().get("sampler", name).build(**options)
    rng = np.random.default_rng(seed)
    if prime is None:
        prime = saved.vocab.symbols[rng.integers(len(saved.vocab))]
    prime = _known_part(prime, saved.vocab, skip_unknown)
    pieces = stream(saved.model, saved.vocab, prime, length, sampler, rng, num_samples, stop,
                    repetition_penalty, repetition_window)
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
        else:
            texts = [[] for _ in range(num_samples)]
            for step in pieces:
                for text, piece in zip(texts, step):
                    text.append(piece)
            for text in texts:
                click.echo(prime + "".join(text))


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
    click.echo(f"charseq: left out {len(unknown)} unknown character(s) of the prime: {shown}", err=True)
    return kept


@cli.command(name="eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--corpus", "corpus_spec", required=True, metavar="NAME[:ARG]", shell_complete=_complete_names("corpus"),
              help="The text to evaluate on: text:PATH, or any corpus.")
@click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Parallel streams.")
@click.option("--seq-len", type=int, default=64, show_default=True, help="Characters per window.")
@json_option
@threads_option
def evaluate_command(checkpoint_path, corpus_spec, encoding, batch_size, seq_len, as_json, threads):
    """Print a checkpoint's loss on a corpus: nats and bits per character, and perplexity."""
    from charseq import checkpoint
    from charseq.trainer import evaluate, loss_metrics

    saved = checkpoint.load(checkpoint_path)
    corpus = _load_corpus(get_registry(), corpus_spec, encoding)
    unknown = saved.vocab.unknown(corpus.vocab.symbols)
    if unknown:
        raise UsageError(f"corpus {corpus.name!r} has {len(unknown)} character(s) the model does not know: "
                         f"{show_characters(unknown)}")
    # The corpus's ids are in its own vocabulary: map them to the model's.
    mapping = np.array([saved.vocab.symbols.index(c) for c in corpus.vocab.symbols], dtype=saved.vocab.dtype)
    with _blas_threads(threads):
        loss = evaluate(saved.model, mapping[corpus.ids], batch_size, seq_len)
    metrics = {"corpus": corpus.name, "characters": len(corpus), **loss_metrics(loss)}
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        click.echo(f"{corpus.name}: {len(corpus):,} characters, loss {loss:.4f} nats/char, "
                   f"{metrics['bpc']:.4f} bits/char, perplexity {metrics['perplexity']:.3f}")


@cli.command()
@click.argument("metrics_path", metavar="METRICS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("loss.png"),
              show_default=True, help="The picture to write (PNG, SVG or PDF by its suffix).")
def plot(metrics_path, out):
    """Draw the training and validation loss of a --metrics file."""
    from charseq.plot import plot_metrics

    plot_metrics(metrics_path, out)
    click.echo(f"wrote {out}")


# -- listings -----------------------------------------------------------------------


@cli.command()
@json_option
def plugins(as_json):
    """List loaded plugins: name, package, version and what each registers."""
    infos = get_registry().plugins()
    commands = _plugin_command_names()
    rows = [(info, {**info.registers, **({"command": commands[info.name]} if info.name in commands else {})})
            for info in infos]
    if as_json:
        click.echo(json.dumps([{"name": info.name, "package": info.package, "version": info.version,
                                "registers": registers} for info, registers in rows], indent=2))
        return
    for info, registers in rows:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in registers.items())
        click.echo(f"{info.name} ({info.package} {info.version})  {provides or 'nothing registered'}")


def _plugin_command_names() -> dict[str, list[str]]:
    """The subcommands each plugin added, by plugin name."""
    cli._add_plugin_commands()
    names: dict[str, list[str]] = {}
    for command, plugin_name in cli._plugin_commands[1].items():
        names.setdefault(plugin_name, []).append(command)
    return names


def _listing(kind: str):
    def command(as_json):
        items = get_registry().all(kind)
        if as_json:
            click.echo(json.dumps([{"name": n, "help": i.help, "plugin": i.plugin} for n, i in items.items()],
                                  indent=2))
            return
        width = max((len(name) for name in items), default=0)
        for name, item in items.items():
            click.echo(f"{name:<{width}}  {item.help}  [{item.plugin}]")

    return json_option(command)


for _kind, _name in (("corpus", "corpora"), ("sampler", "samplers"), ("callback", "callbacks")):
    cli.command(name=_name, help=f"List the available {_name}, one per line.")(_listing(_kind))
