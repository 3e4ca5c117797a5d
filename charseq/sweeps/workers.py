"""The workers of a sweep: each asks the study for a trial's parameters, trains a run with
them (its checkpoint and metrics in a folder of the trial's own), reports each evaluation
so that a pruner can stop a hopeless trial, and records the trial's loss, or its failure
and why; several at once in processes of their own, stopped together by a signal."""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from typing import Any

from charseq import blas
from charseq.errors import CharseqError, UsageError
from charseq.sweeps.roster import join, open_roster, worker_seed
from charseq.sweeps.storage import masked, passwords_hidden, require_optuna
from charseq.training.context import Callback
from charseq.training.interrupt import SIGNALS, exit_code, take_signals
from charseq.sweeps.study import Sweep, load_study, open_study, prepare_directory


INTERRUPTED = "interrupted (Ctrl-C or a signal)"


NOT_RUN = "not run"


WORKER_GRACE = 10.0  # seconds the workers have to stop after Ctrl-C


class Interrupted(KeyboardInterrupt):
    """A signal stopped the sweep: `exit_code` is train's for it (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""

    def __init__(self, exit_code: int = 130):
        super().__init__(exit_code)
        self.exit_code = exit_code


class _Reporter(Callback):
    """The callback that gives the trial its validation loss as the run goes, and stops the
    run when the pruner says the trial is hopeless.

    A report's step is how far through its run the trial is, in tenths (0, 10, ... 100
    percent of its epochs, or of its time limit's plan or budget), the first evaluation in
    each: trials then meet the pruner at the same share of their schedules, however many
    evaluations each makes."""

    def __init__(self, trial: Any):
        self.trial = trial
        self.pruned = False
        self.reported = -1  # the last share reported, in percent

    def on_train_begin(self, trainer: Any) -> None:
        """A signal that came after the last look at _Stop, before the run took the signals as
        its own, would be lost and the run would train on: give it to the run now."""
        if _Stop.exit_code is not None:
            signal.raise_signal(_Stop.exit_code - 128)

    def on_evaluation(self, trainer: Any, metrics: dict[str, Any]) -> None:
        value = metrics.get("val_loss", metrics.get("loss"))
        share = _share_done(trainer)
        if value is None or not math.isfinite(value) or share <= self.reported:
            return
        self.trial.report(float(value), share)
        self.reported = share
        # At the end of its run (its last tenth, or its time spent) a trial has spent its
        # time: pruning it then saves nothing and would throw its loss away.
        if share < 100 and not trainer.time_up and self.trial.should_prune():
            self.pruned = True
            trainer.stop_training = True


def _share_done(trainer: Any) -> int:
    """How far through its run a trial is, in percent, rounded down to tenths: of its end
    step once known, else of its time limit's budget."""
    end, limit = trainer.end_step, trainer.config.time_limit
    done = trainer.step / end if end else trainer.wall_time / limit if limit else 0.0
    return min(10, int(done * 10)) * 10


def objective(sweep: Sweep, worker: int | None = None) -> Any:
    """The function a worker's study optimizes: one training run per trial, recorded with the
    number of the worker that ran it (charseq.sweeps.roster) and where its checkpoint is."""
    optuna = require_optuna()
    from charseq.training.run import Run

    def run_trial(trial: Any) -> float:
        if worker is not None:
            trial.set_user_attr("worker", worker)
        if _Stop.exit_code is not None:
            trial.set_user_attr("failure", INTERRUPTED)
            raise Interrupted(_Stop.exit_code)
        if _count(trial.study, before=trial.number) >= sweep.trials:  # workers that finished together
            trial.set_user_attr("failure", f"{NOT_RUN}: the study already held {sweep.trials} trials")
            trial.study.stop()                                        # both asked for one more
            raise CharseqError(trial.user_attrs["failure"])
        values = {param.name: param.suggest(trial) for param in sweep.params}
        train = dict(sweep.train)
        model_options = dict(train.pop("model_options", None) or {})
        for name, value in values.items():
            if name == "model":
                train["model"] = value
            elif name.startswith("model."):
                model_options[name.removeprefix("model.")] = value
            else:
                train[name] = value
        folder = sweep.trial_directory(trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("directory", str(folder))
        # Where the checkpoint is from any working directory, and on which machine: a report
        # may be read elsewhere.
        trial.set_user_attr("checkpoint", os.path.abspath(folder / "model.npz"))
        trial.set_user_attr("host", socket.gethostname())
        reporter = _Reporter(trial)
        callbacks = [("metrics", {"path": str(folder / "metrics.jsonl")}), *train.pop("callbacks", [])]
        started = time.perf_counter()
        try:
            # Never force: a file there (another study's run) is refused, and the trial fails saying so.
            run = Run.start(train.pop("corpus"), out=folder / "model.npz", callbacks=callbacks,
                            model_options=model_options or None, extra_callbacks=[reporter], **train)
            _stop_if_asked()  # a signal while the run was being built
            result = run.fit()
        except CharseqError as exc:  # a bad combination, a diverging run: the trial fails, the sweep goes on
            trial.set_user_attr("failure", str(exc))
            raise
        except KeyboardInterrupt:  # Ctrl-C before the run could take it as its own
            trial.set_user_attr("failure", INTERRUPTED)
            raise
        except Exception as exc:  # a plugin's fault, a file system's: recorded, and the sweep goes on
            trial.set_user_attr("failure", f"{type(exc).__name__}: {exc}")
            raise
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
        if result.status == "interrupted":  # Ctrl-C: saved; the trial ends failed, and the sweep stops
            trial.set_user_attr("failure", INTERRUPTED)
            raise Interrupted(result.exit_code)
        if result.stop_asked is not None:  # as the run saved, once it had ended: the trial counts, the sweep stops
            _Stop.exit_code = exit_code(result.stop_asked)
        if reporter.pruned:
            trial.set_user_attr("pruned_at", reporter.reported)
            raise optuna.TrialPruned(f"pruned {reporter.reported} % of the way through its run")
        loss = result.metrics.get("val_loss", result.metrics.get("loss"))
        if loss is None or not math.isfinite(loss):
            trial.set_user_attr("failure", f"the run ended without a finite loss ({loss})")
            raise CharseqError(trial.user_attrs["failure"])
        return float(loss)

    return run_trial


def work(sweep: Sweep, study: Any = None) -> int:
    """One worker: trials until the study holds `sweep.trials` (of any state) or time is up.
    `study`: the sweep's, when this process has loaded it already. The worker's number, which
    the storage gave it and which seeds its sampler (charseq.sweeps.roster)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is in the report, with why
    study = study if study is not None else load_study(sweep)
    optuna.storages.fail_stale_trials(study)  # a dead worker's trial, even when no new trial starts
    worker = join(study)
    study.sampler = optuna.samplers.TPESampler(seed=worker_seed(sweep.seed, worker))
    restore = _stop_on_signals()

    def enough(study: Any, trial: Any) -> None:
        if _count(study) >= sweep.trials or _Stop.exit_code is not None:
            study.stop()

    try:
        with blas.limited(sweep.threads):
            study.optimize(objective(sweep, worker), timeout=sweep.timeout, catch=(Exception,), gc_after_trial=False,
                           callbacks=[enough], n_trials=None if _count(study) < sweep.trials else 0)
        _stop_if_asked()
    finally:
        restore()
    return worker


class _Stop:
    """A SIGTERM or SIGHUP that came between runs (a run takes its own while it trains): noted
    here and acted on at the next safe point, never raised in the middle of a database call."""

    exit_code: int | None = None


def _stop_on_signals() -> Any:
    """SIGTERM and SIGHUP (unless ignored: nohup's) end the sweep as Ctrl-C does, with
    train's exit codes (143, 129). The function that puts the old handlers back."""
    _Stop.exit_code = None

    def note(signum: int, frame: Any) -> None:
        _Stop.exit_code = exit_code(signum)

    return take_signals(note, (signal.SIGTERM, signal.SIGHUP))


def _stop_if_asked() -> None:
    if _Stop.exit_code is not None:
        raise Interrupted(_Stop.exit_code)


def counted(trial: Any) -> bool:
    """Whether a trial counts towards --trials: one that ran to its own end (completed,
    pruned, or failed of itself) or is running. One interrupted, one whose worker died (no
    reason recorded) and one not run do not: the same command again runs others instead."""
    state = trial.state.name
    if state in ("COMPLETE", "PRUNED", "RUNNING"):
        return True
    reason = trial.user_attrs.get("failure", "")
    return state == "FAIL" and bool(reason) and reason != INTERRUPTED and not reason.startswith(NOT_RUN)


def _count(study: Any, before: int | None = None) -> int:
    """Trials that count, all of them or those numbered `before` one: a trial is surplus
    only when enough came before it, so two workers that each asked for one more cannot
    each find the other's new trial running and both give up."""
    return sum(counted(t) for t in study.get_trials(deepcopy=False) if before is None or t.number < before)


def _worker_main(sweep: Sweep, worker: int) -> None:  # in a child process
    """One worker of several (`worker`: its place among this command's, for messages; its
    number in the study is the storage's to give): each failure one line on stderr, a
    thread's too (a storage that went away fails its heartbeat thread as well as its trial),
    never a traceback."""
    import sys
    import threading
    import warnings

    def one_line(failure: BaseException) -> str:
        text = str(failure).splitlines()[0] if str(failure) else ""
        return masked(f"charseq: worker {worker}: {type(failure).__name__}: {text}".rstrip(": "), sweep.storage)

    warnings.simplefilter("ignore")  # the parent says what matters; N copies of a warning help no one
    threading.excepthook = lambda args: print(one_line(args.exc_value or args.exc_type()), file=sys.stderr)
    try:
        with passwords_hidden(sweep.storage):
            work(sweep)
    except KeyboardInterrupt as exc:  # Ctrl-C reaches every worker: the parent says it once
        sys.exit(getattr(exc, "exit_code", 130))
    except CharseqError as exc:
        print(f"charseq: worker {worker}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:  # the storage's own failure, say: the parent sums up
        print(one_line(exc), file=sys.stderr)
        sys.exit(1)


def run_sweep(sweep: Sweep, jobs: int = 1) -> None:
    """`jobs` workers on this machine, each in a process of its own (one: this process). The
    study is loaded here first: the tables and the study exist before the workers race to make
    them, and the directory is marked with the identity of a study that is there."""
    study, identity = open_study(sweep)
    try:
        open_roster(study)  # (refused here, once, rather than by each worker)
        prepare_directory(sweep, identity)
    except UsageError:  # a study made just now, for nothing: gone again, as if the command had not run
        if identity.made:
            require_optuna().delete_study(study_name=sweep.study, storage=study._storage)
        raise
    if jobs == 1:
        work(sweep, study=study)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no BLAS threads or locks inherited
    workers = [context.Process(target=_worker_main, args=(sweep, index), name=f"charseq-sweep-{index}")
               for index in range(jobs)]
    for process in workers:
        process.start()

    def stop(signum: int, frame: Any) -> None:  # SIGTERM or SIGHUP for the parent: for its workers too
        for process in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)
        raise Interrupted(exit_code(signum))

    put_back = take_signals(stop, (signal.SIGTERM, signal.SIGHUP))
    try:
        for process in workers:
            process.join()
    except KeyboardInterrupt as exc:  # the workers had it too: each saves its run and records its trial
        deadline = time.monotonic() + WORKER_GRACE
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in workers:  # one stuck (in a database call, say) is killed; its heartbeat stops
            if process.is_alive():
                process.kill()
            process.join()
        raise exc if isinstance(exc, Interrupted) else Interrupted(130) from None
    finally:
        put_back()
    failed = [p.exitcode for p in workers if p.exitcode not in (0, None)]
    if failed and set(failed) <= {exit_code(signum) for signum in SIGNALS}:  # signalled, as train would be
        raise Interrupted(failed[0])
    if failed:
        raise CharseqError(f"{len(failed)} of {jobs} workers ended with an error (exit codes "
                           f"{', '.join(map(str, failed))}); the study keeps their trials: run the command again "
                           "to go on")
