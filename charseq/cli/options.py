"""Options commands share, train's settings among them: the toolkit a command plugin builds
on (docs/plugins.md), the same one charseq's own commands use.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from typing import Any, TypeVar

import click

from charseq import blas
from charseq.errors import CharseqError, UsageError
from charseq.hooks.registry import get_registry
from charseq.runs import settings as settings_table

F = TypeVar("F", bound=Callable[..., Any])


def complete_names(kind: str) -> Callable[..., list[Any]]:
    """Shell completion of registered names (kind: "model", "corpus", "sampler" or
    "callback"), for NAME[:ARG] options: `shell_complete=complete_names("corpus")`."""

    def complete(ctx, param, incomplete: str):
        from click.shell_completion import CompletionItem

        try:
            items = get_registry().all(kind)
        except CharseqError:
            return []
        return [CompletionItem(name, help=item.help) for name, item in items.items() if name.startswith(incomplete)]

    return complete


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
"""--json, as `as_json`."""
encoding_option = click.option("--encoding", help="Text encoding of the corpus files.  [default: utf-8]")
"""--encoding of a corpus's files; give it to `corpus_options`."""
exact_text_option = click.option(
    "--exact-text", is_flag=True,
    help="Read text byte for byte: keep \\r\\n line endings and a leading byte-order mark.  [default: \\r\\n is "
         "read as \\n, the mark dropped]")
"""--exact-text, as `exact_text`; give it to `corpus_options`."""


def corpus_options(encoding: str | None, exact_text: bool) -> dict[str, object]:
    """--encoding and --exact-text as the corpus's options: only those given, so that a
    resumed run keeps the ones it recorded."""
    options: dict[str, object] = {} if encoding is None else {"encoding": encoding}
    if exact_text:
        options["exact"] = True
    return options


def threads_option(command: F) -> F:
    """--threads N (default: every core), as `threads`: run the work under
    `charseq.blas.limited(threads)`, as train, generate and eval do."""
    return _threads(blas.available_cores, "all cores")(command)


def resumed_threads_option(command: F) -> F:
    """--threads N as `threads`, None when not given: train's, whose resumed run goes on
    with the threads it recorded (Run.recorded_threads), and a new one with every core."""
    return _threads(None, "all cores; a resumed run's own")(command)


def _threads(default: Any, shown: str) -> Callable[[F], F]:
    return click.option("--threads", type=click.IntRange(min=1, max=blas.MAX_THREADS), default=default,
                        show_default=shown, help="BLAS threads for the matrix products.")


def training_options(command: F) -> F:
    """train's settings, one option per TrainConfig field (--epochs, --lr, --hidden-size,
    ...), each given to the command under the field's name, None when not given: from the
    field's type, help and choices, stated once, in charseq.runs.settings."""
    for name, kind, meta in reversed(settings_table.settings()):
        choices = meta.get("choices")
        click_type = click.Choice(choices) if choices else kind
        command = click.option(f"--{name.replace('_', '-')}", name, type=click_type, metavar=meta.get("metavar"),
                               help=meta["help"])(command)
    return command


def shortcut_callbacks(metrics_path: str | PathLike[str] | None = None, patience: int | None = None,
                       min_delta: float | None = None, restore_best: bool | None = None,
                       checkpoint_every: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """train's --metrics, --patience (with --min-delta, --restore-best) and --checkpoint-every
    as the callbacks they stand for, in this order, for `Run.start(callbacks=...)`."""
    callbacks: list[tuple[str, dict[str, Any]]] = []
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


