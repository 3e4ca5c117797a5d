"""`charseq sweep`: many training runs over a search space, on Optuna (the sweep extra).

Registered through ``register_commands``, the door a third party's command uses; the
sweep itself is charseq.sweeps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from charseq import hookimpl
from charseq.blas import MAX_THREADS
from charseq.errors import CharseqError, UsageError
from charseq.installation import install_command


# Long as a declaration is: one decorator per option, beside the command they configure; the
# checks are one line each and the work is in charseq.sweeps.
@hookimpl
def register_commands(cli):
    import click  # here, not at import: loading the plugins must not load the CLI's packages

    from charseq import blas
    from charseq.cli import (corpus_options, encoding_option, exact_text_option, say, shortcut_callbacks,
                             training_options)
    from charseq.sweeps import DEFAULT_DIRECTORY, DEFAULT_STORAGE, PRUNERS

    @cli.command(short_help="Train many runs over a search space and keep the best (Optuna).")
    @click.option("--corpus", "corpus_spec", metavar="NAME[:ARG]", help="What every trial trains on (as train's).")
    @encoding_option
    @click.option("--model", "model_spec", metavar="NAME[:KEY=VALUE,...]", help="The model of every trial, unless "
                                                                                 "--param model=... chooses it.")
    @click.option("--param", "param_specs", multiple=True, metavar="NAME=KIND:ARGS",
                  help="A dimension of the search: lr=log:1e-4:1e-2, dropout=float:0:0.5, hidden-size=int:128:512:128, "
                       "optimizer=choice:adam,rmsprop, model.layers=int:1:3. Repeat for each.")
    @training_options
    @exact_text_option
    @click.option("--patience", type=click.IntRange(min=0), metavar="EPOCHS",
                  help="Each trial stops after this many epochs without improvement (as train's).")
    @click.option("--min-delta", type=float, help="With --patience: the smallest change that counts.")
    @click.option("--callback", "callback_specs", multiple=True, metavar="NAME[:KEY=VALUE,...]",
                  help="A callback for every trial (as train's); each trial already keeps its metrics.")
    @click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
                  help="Trials the study is to hold (every state counted); the same command again goes on to them.")
    @click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS",
                  help="Start no trial after this long (each worker).")
    @click.option("--study", "study_name", default="charseq", show_default=True, help="The study's name.")
    @click.option("--storage", default=DEFAULT_STORAGE, show_default=True, metavar="URL",
                  help="Where the study lives: an SQLite file here, or a URL several machines share, such as "
                       "postgresql://user:password@host/db.")
    @click.option("--dir", "directory", default=DEFAULT_DIRECTORY, show_default=True, type=click.Path(),
                  help="Each trial's checkpoint and metrics go in DIR/STUDY/trial-NNNN/ (DIR/STUDY holds one "
                       "study's runs only: it is marked with the study's identity).")
    @click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Worker processes on this machine; the BLAS threads are split between them.")
    @click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), help="BLAS threads of each worker.  [default: the "
                                                                  "cores divided by --jobs]")
    @click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
                  help="Stops hopeless trials early, from each evaluation's validation loss.")
    @click.option("--report", is_flag=True, help="Print the study's trials and best parameters; train nothing.")
    @click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="PNG",
                  help="With --report: draw the optimisation history (needs the plot extra).")
    @click.option("--json", "as_json", is_flag=True, help="With --report: print JSON, for scripts.")
    def sweep(corpus_spec, encoding, model_spec, param_specs, exact_text, patience, min_delta, callback_specs, trials,
              timeout, study_name, storage, directory, jobs, threads, pruner, report, plot_path, as_json, **settings):
        """Train many runs over a search space and keep the best (Optuna).

        Each trial trains a run whose settings are drawn from the --param dimensions; every
        other training option works as in `charseq train`. Trials report each evaluation's
        validation loss, so that a pruner stops hopeless ones; a trial that fails (a diverging
        run) is recorded as failed, with why, and the sweep goes on. The study lives in
        --storage: the same command again continues it, and started on several machines with
        one shared --storage, they work on one study.

        \b
        Examples:
          charseq sweep --corpus text:novel.txt --epochs 2 --param lr=log:1e-3:1e-2 --trials 10
          charseq sweep --corpus lines:names.txt --param dropout=float:0:0.3 --jobs 2
          charseq sweep --report --plot history.png
        """
        from charseq import sweeps

        sweeps.require_optuna()
        if report:
            return _report(sweeps, storage, study_name, plot_path, as_json, say)
        if plot_path or as_json:
            raise UsageError("--plot and --json go with --report")
        if corpus_spec is None:
            raise UsageError("missing option --corpus (or --report); see charseq sweep --help")
        params = [sweeps.Param.parse(spec) for spec in param_specs]
        if not params:
            raise UsageError("a sweep needs at least one --param NAME=KIND:ARGS to search over")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise UsageError(f"--param {next(n for n in names if names.count(n) > 1)!r} is given twice")
        fixed = {name: value for name, value in settings.items() if value is not None}
        clash = sorted(set(fixed) & set(names))
        if clash:
            raise UsageError(f"--{clash[0].replace('_', '-')} is fixed and searched over (--param); give one")
        if any(spec.split(":")[0] == "metrics" for spec in callback_specs):
            raise UsageError("each trial keeps its metrics in its own folder already; leave out --callback metrics")
        if any(spec.split(":")[0] == "checkpoint" and "path=" in spec for spec in callback_specs):
            raise UsageError("every trial would write the same checkpoint path; leave out path= (each trial's "
                             "checkpoints then go in its folder)")
        if model_spec is not None and ":" in model_spec:
            from charseq.hooks.options import parse_options

            fixed_options = parse_options(model_spec.split(":", 1)[1])
            both = [name for name in names if name.startswith("model.") and name[6:] in fixed_options]
            if both:
                raise UsageError(f"{both[0]} is fixed in --model and searched over (--param); give one")
        callbacks = shortcut_callbacks(patience=patience, min_delta=min_delta) + list(callback_specs)
        train = {"corpus": corpus_spec, "corpus_options": corpus_options(encoding, exact_text), **fixed,
                 "callbacks": callbacks}
        if model_spec is not None:
            train["model"] = model_spec
        if threads is None:
            threads = max(1, blas.available_cores() // jobs)
        plan = sweeps.Sweep(study_name, params, train, trials, timeout, storage, directory, pruner,
                            fixed.get("seed"), threads)
        if jobs > 4 * blas.available_cores():
            raise UsageError(f"--jobs {jobs} on {blas.available_cores()} cores would only slow each worker down")
        sweeps.preflight(plan)  # what every trial would fail on, refused before a word of the sweep
        say(f"sweep {study_name!r}: {trials} trials in {sweeps.shown_url(storage)}, {jobs} worker"
            f"{'s' if jobs > 1 else ''} of {threads} BLAS thread{'s' if threads > 1 else ''}, runs in "
            f"{Path(directory) / study_name}/", err=True)
        _run(sweeps, plan, jobs, say)


def _run(sweeps, plan, jobs, say) -> None:
    """The sweep, then its report. No error shows the storage's password; a directory that
    holds another study's runs is refused, saying which options to change."""
    with sweeps.passwords_hidden(plan.storage):
        try:
            sweeps.run_sweep(plan, jobs)
        except sweeps.DirectoryTaken as exc:
            raise UsageError(f"{exc}; give another --dir or --study") from None
        except sweeps.Interrupted as stopped:
            say("charseq: sweep interrupted; the same command goes on with it", err=True)
            sys.exit(stopped.exit_code)
        if _report(sweeps, plan.storage, plan.study, None, False, say) is None:
            raise CharseqError("no trial has completed: see each one's note above")


def _report(sweeps, storage, study_name, plot_path, as_json, say):
    """Print the study's trials and best; the best trial (None when none completed)."""
    existed = False
    if plot_path:
        where = Path(plot_path)
        if where.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise UsageError(f"--plot {plot_path!r}: draw a .png, .pdf or .svg")
        if not (where.parent if str(where.parent) else Path(".")).is_dir():
            raise UsageError(f"--plot {plot_path!r}: its folder does not exist")
        from charseq.cli import check_picture

        existed = check_picture(where, "--plot", can_force=False)
    with sweeps.passwords_hidden(storage):
        rows, best = sweeps.report(storage, study_name)
    if as_json:
        say(json.dumps({"study": study_name, "trials": [row.__dict__ for row in rows],
                        "best": None if best is None else {"number": best.number, "value": best.value,
                                                           "params": best.params, "checkpoint": best.checkpoint,
                                                           "checkpoint_found": best.checkpoint_found(),
                                                           "worker": best.worker, "host": best.host}}),
            essential=True)
    else:
        names = sorted({name for row in rows for name in row.params})
        header = ["trial", "worker", "state", "loss", "seconds", *[name.replace("_", "-") for name in names], "note"]
        table = [header] + [[str(row.number), _shown(row.worker), row.state,
                             "" if row.value is None else f"{row.value:.4f}",
                             "" if row.seconds is None else f"{row.seconds:.1f}",
                             *[_shown(row.params.get(name)) for name in names], row.note[:60]] for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for line in table:
            say("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip(), essential=True)
        if best is None:
            say("no trial has completed yet", essential=True)
        else:
            shown = ", ".join(f"{k.replace('_', '-')}={_shown(v)}" for k, v in best.params.items())
            say(f"best: trial {best.number}, loss {best.value:.4f}: {shown}", essential=True)
            say(f"checkpoint: {_where(best)}", essential=True)
    if plot_path:
        _plot(rows, plot_path, existed)
        say(f"drew {plot_path}", err=True)
    return best


def _where(row) -> str:
    """Where a trial's checkpoint is, as a path to paste after `charseq generate` (quoted for
    the shell where it must be), and on which machine when it is not this one."""
    import shlex

    if row.checkpoint is None:  # an earlier release's trial: its folder, as --dir named it there
        folder = Path(row.directory or "?")
        path = shlex.quote(str(folder / "model.npz"))
        return path if folder.is_absolute() else f"{path} (relative to the folder the sweep ran in)"
    path = shlex.quote(row.checkpoint)
    found = row.checkpoint_found()
    if found == "elsewhere":
        return f"{path} (on {row.host}, which ran it)"
    return path if found == "here" else f"{path} (not there any more)"


def _shown(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot(rows, path, existed: bool) -> None:
    from charseq.cli import save_picture

    figure = history_figure(rows)  # (says what to install when matplotlib is not there)
    import matplotlib.pyplot as plt

    save_picture(figure, Path(path), follow_links=existed)
    plt.close(figure)


def history_figure(rows):
    """The optimisation history: each completed trial's loss by its number, and the best so
    far; a trial number is a whole number, and so is every tick of that axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, MaxNLocator
    except ImportError:
        raise UsageError(f"--plot needs matplotlib: {install_command('plot')}") from None
    done = [row for row in rows if row.value is not None]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.scatter([row.number for row in done], [row.value for row in done], s=18, label="trial")
    best, running = [], float("inf")
    for row in done:
        running = min(running, row.value)
        best.append(running)
    axes.step([row.number for row in done], best, where="post", color="C1", label="best so far")
    # The axis spans the study's trials, and half a trial either side; each few a tick, or
    # whole numbers chosen among many (MaxNLocator alone ticks fractions with fewer than two
    # whole numbers in view, and -1 left of trial 0).
    numbers = [row.number for row in rows] or [0]
    low, high = min(numbers), max(numbers)
    axes.set_xlim(low - 0.5, high + 0.5)
    axes.xaxis.set_major_locator(FixedLocator(range(low, high + 1)) if high - low < 10
                                 else MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel("validation loss (nats/char)")
    axes.legend()
    figure.tight_layout()
    figure.set_dpi(120)
    return figure
