"""Sweeps: many training runs over a search space, on Optuna.

A study lives in a storage that several processes, or machines, share: by default an
SQLite file in the working directory (no server), or any URL Optuna accepts, such as
``postgresql://``. Each worker asks the study for a trial's parameters, trains a run with
them (its checkpoint and metrics in a folder of the trial's own), reports each
evaluation's validation loss so that a pruner can stop a hopeless trial early, and records
the trial's best loss, or its failure and why. Every worker stops once the study holds
``trials`` trials, so the same command started again continues the study, and started on
several machines shares it. Workers beat a heartbeat into the storage: a worker killed
mid-trial leaves its trial to be marked failed by the next worker to start, not running
for ever. Each study charseq makes has a random identity, and the folder of its runs is
marked with it: another study of the same name (in another storage, or in one removed and
made again) is refused that folder, and a trial never replaces a file that is there.
Optuna is imported here only, when a sweep runs (the sweep extra).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from charseq import blas
from charseq.hooks.specs import hookimpl
from charseq.runs.settings import settings as train_settings
from charseq.errors import CharseqError, UsageError

INSTALL_HINT = "pip install 'charseq[sweep]'"
DEFAULT_STORAGE = "sqlite:///charseq-sweeps.db"
DEFAULT_DIRECTORY = "sweeps"
PRUNERS = ("median", "hyperband", "none")
OPEN_ATTEMPTS = 8
INTERRUPTED = "interrupted (Ctrl-C or a signal)"
NOT_RUN = "not run"
WORKER_GRACE = 10.0  # seconds the workers have to stop after Ctrl-C
STUDY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
LONGEST_STUDY_NAME = 100  # it names a folder: well below a file system's 255 bytes
SEARCH = "charseq.search"  # the study's user attr: its search space, fixed settings and identity, in one write
MARKER = "study.json"  # in DIR/STUDY/: the identity of the study whose runs the folder holds
IDENTITY_WAIT = 5.0  # seconds to wait for the process that has just made a study to record it
# A worker beats every HEARTBEAT seconds; a running trial silent for GRACE is taken for dead
# (CHARSEQ_SWEEP_HEARTBEAT and CHARSEQ_SWEEP_GRACE change them, for tests).
HEARTBEAT = 30


def _heartbeat() -> tuple[int, int]:
    values: list[int] = []
    for name, default in (("CHARSEQ_SWEEP_HEARTBEAT", HEARTBEAT), ("CHARSEQ_SWEEP_GRACE", None)):
        text = os.environ.get(name)
        if text is None:
            values.append(default if default is not None else 4 * values[0])
            continue
        if not text.strip().isdigit() or int(text) < 1:
            raise UsageError(f"{name} must be a whole number of seconds, at least 1; got {text!r}")
        values.append(int(text))
    return values[0], values[1]
_SPEC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.-]*)=(?P<kind>log|float|int|choice):(?P<args>.+)$")


class Interrupted(KeyboardInterrupt):
    """A signal stopped the sweep: `exit_code` is train's for it (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""

    def __init__(self, exit_code: int = 130):
        super().__init__(exit_code)
        self.exit_code = exit_code


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise CharseqError(f"charseq sweep needs Optuna: {INSTALL_HINT}") from None
    return optuna


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: ``lr=log:1e-4:1e-2``, ``dropout=float:0:0.5``,
    ``hidden-size=int:128:512:128``, ``optimizer=choice:adam,rmsprop``. A name is a training
    setting (as its flag, without the dashes), ``model`` (a model spec), or ``model.OPTION``
    (an option of the model, such as ``model.layers``)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Param:
        found = _SPEC.match(spec.strip())
        if not found:
            raise UsageError(f"--param {spec!r}: expected NAME=KIND:ARGS, such as lr=log:1e-4:1e-2, dropout=float:0:0.5, "
                             "hidden-size=int:128:512:128 or optimizer=choice:adam,rmsprop")
        name, kind, args = found["name"].replace("-", "_"), found["kind"], found["args"]
        known = {setting for setting, _, _ in train_settings()}
        if name not in known and name != "model" and not name.startswith("model."):
            raise UsageError(f"--param {spec!r}: {name!r} is not a training setting; the settings are "
                             f"{', '.join(sorted(known))}, model and model.OPTION")
        if kind == "choice":
            choices = tuple(_value(choice) for choice in args.split(","))
            if any(isinstance(c, float) and not math.isfinite(c) for c in choices):
                raise UsageError(f"--param {spec!r}: a choice must be a finite number or text")
            if not all(str(c) for c in choices) or len(set(choices)) != len(choices):
                raise UsageError(f"--param {spec!r}: the choices must be different and not empty")
            return cls(name, kind, choices=choices)
        parts = args.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and kind != "int"):
            raise UsageError(f"--param {spec!r}: {kind} takes LOW:HIGH" + ("[:STEP]" if kind == "int" else ""))
        try:
            numbers = [int(p) if kind == "int" else float(p) for p in parts]
        except ValueError:
            raise UsageError(f"--param {spec!r}: {':'.join(parts)} are not {kind} numbers") from None
        low, high = numbers[0], numbers[1]
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise UsageError(f"--param {spec!r}: LOW must be below HIGH")
        if kind == "log" and low <= 0:
            raise UsageError(f"--param {spec!r}: a log range must be above 0")
        step = numbers[2] if len(numbers) == 3 else None
        if step is not None and (step < 1 or (high - low) % step):
            raise UsageError(f"--param {spec!r}: the step must be at least 1 and divide HIGH - LOW")
        return cls(name, kind, low, high, step)

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")


def _value(text: str) -> Any:
    """A choice as it is meant: a whole number, a number, or text."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass
class Sweep:
    """A study and what each of its trials trains: `train` holds Run.start's arguments
    common to every trial (corpus, model, settings), `params` the search space."""

    study: str
    params: list[Param]
    train: dict[str, Any]
    trials: int = 20
    timeout: float | None = None
    storage: str = DEFAULT_STORAGE
    directory: str = DEFAULT_DIRECTORY
    pruner: str = "median"
    seed: int | None = None
    threads: int | None = None  # BLAS threads of each worker
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not STUDY_NAME.match(self.study) or len(self.study) > LONGEST_STUDY_NAME:
            shown = self.study if len(self.study) <= LONGEST_STUDY_NAME else f"{self.study[:20]}... ({len(self.study)} long)"
            raise UsageError(f"--study {shown!r}: a study's name is letters, digits and - _ . (at most "
                             f"{LONGEST_STUDY_NAME} of them: it names a folder under --dir)")
        check_storage(self.storage)

    def trial_directory(self, number: int) -> Path:
        return Path(self.directory) / self.study / f"trial-{number:04d}"


def open_storage(url: str) -> Any:
    """Optuna's storage for `url`, with heartbeats so that dead workers' trials end."""
    optuna = require_optuna()
    import warnings

    # Heartbeats are "experimental" in Optuna 4-5; they are what ends a dead worker's trial.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 20}}  # several local workers wait their turn
    import random

    heartbeat, grace = _heartbeat()
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=grace, **kwargs)
        except ImportError as exc:
            raise CharseqError(f"the storage {_shown_url(url)} needs a database driver: {masked(str(exc), url)}") from None
        except Exception as exc:  # a URL SQLAlchemy cannot parse, a server that does not answer, or a race:
            # workers (or machines) that open a new storage together all try to make its tables, and
            # all but one fail; opened again, the tables are there.
            if attempt + 1 == OPEN_ATTEMPTS or not _maybe_a_race(exc):
                raise CharseqError(f"cannot open the storage {_shown_url(url)}: {type(exc).__name__}: "
                                   f"{masked(str(exc).splitlines()[0] if str(exc) else '', url)}") from None
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def _maybe_a_race(exc: Exception) -> bool:
    """An error that two processes making the same tables at once give (SQLAlchemy's)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(words in text for words in ("already exists", "unique", "duplicate", "locked", "integrity"))


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL, as SQLAlchemy reads it (percent-escapes decoded, a
    ``file:`` URI's path); None for another kind of storage, or an SQLite database in memory."""
    found = _sqlite(url)
    if found is None or found[1]:
        return None
    return found[0]


def _sqlite(url: str) -> tuple[Path | None, bool] | None:
    """For an SQLite URL, its file and whether it is in memory, read as SQLAlchemy reads it
    (the text alone misleads: ``%3Amemory%3A`` is ``:memory:``); None for another kind."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy's ArgumentError, or a URL it cannot read at all: opening it says why
        return None
    if parsed.get_backend_name().lower() != "sqlite":
        return None
    query = {_decoded(key).lower(): _decoded(str(value)).lower() for key, value in parsed.query.items()}
    database = parsed.database or ""
    uri = query.get("uri") in ("true", "1", "yes", "on") or database.startswith("file:")
    full = _decoded(database) if uri else database  # a file: URI SQLite decodes again, after SQLAlchemy
    path = full.removeprefix("file:").split("?")[0] if uri else database
    memory = (not path or path.lower() == ":memory:" or query.get("mode") == "memory" or query.get("vfs") == "memdb"
              or (uri and ("mode=memory" in full.lower() or "vfs=memdb" in full.lower())))
    return (Path(path) if path else None), memory


def _decoded(text: str) -> str:
    """`text` with its percent-escapes decoded until none is left (each reader decodes once)."""
    while (plain := unquote(text)) != text:
        text = plain
    return text


# A URL: scheme://rest. The password in its user part, as SQLAlchemy reads one (user, colon, up
# to an @ that a host follows; scheme:// left out, for a URL given without it), and in its query.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)
_USER_PASSWORD = re.compile(r"^(?P<head>(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:/]*:)(?!//)(?P<secret>.*?)"
                            r"(?P<tail>@[^@/?#]*(?:[/?#]|$))", re.S)
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<key>[^=&;#]*)=)(?P<secret>[^&;#]*)")
_SECRET_KEY = re.compile(r"^(?:[a-z_]*password|passwd|pass|pwd)$", re.I)  # as the driver reads the name (decoded)


def _secret_parameters(url: str) -> list[re.Match[str]]:
    return [found for found in _QUERY_PARAMETER.finditer(url) if _SECRET_KEY.match(_decoded(found["key"]))]


def check_storage(url: str) -> None:
    """Refuse, before anything is made, a storage that cannot hold a study: text that is not
    a URL (which would be shown whole, password and all), and an SQLite database in memory,
    which ends with the process while the study's runs stay in the directory."""
    found = _URL.match(url)
    if found is None:
        raise UsageError("the storage is not a URL: it needs its scheme://, such as sqlite:///FILE.db or "
                         "postgresql://USER:PASSWORD@HOST/DATABASE")
    sqlite = _sqlite(url)
    if sqlite is not None and sqlite[1]:
        raise UsageError(f"the storage {_shown_url(url)} is an SQLite database in memory, which ends with the process "
                         "while the study's runs stay: give a file, such as sqlite:///sweeps.db, or a server's URL")


def _shown_url(url: str) -> str:
    """The URL with its passwords (in the user part, and password= parameters) shown as ***,
    and every other character as it was."""
    url = _USER_PASSWORD.sub(r"\g<head>***\g<tail>", url, count=1)
    secret = {found.start() for found in _secret_parameters(url)}
    return _QUERY_PARAMETER.sub(lambda found: found["head"] + "***" if found.start() in secret else found[0], url)


def masked(text: str, url: str) -> str:
    """`text` (an error's, which may quote the URL or its password, as given or decoded) without
    the passwords of `url`."""
    text = text.replace(url, _shown_url(url))
    found = [match["secret"] for match in [*_USER_PASSWORD.finditer(url), *_secret_parameters(url)]]
    for secret in sorted({form for raw in found for form in (raw, unquote(raw)) if form}, key=len, reverse=True):
        # (as a whole word: a short password is not every letter of that name in a message)
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


@contextmanager
def passwords_hidden(url: str) -> Iterator[None]:
    """An error that leaves here does not show the storage's password, however deep it began
    (a driver's message may quote the URL): charseq's is masked, another that would show it
    becomes charseq's, in one line."""
    try:
        yield
    except CharseqError as exc:
        exc.args = (masked(str(exc), url),)
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        if masked(str(exc), url) == str(exc):
            raise
        raise CharseqError(f"the storage {_shown_url(url)} failed: {type(exc).__name__}: {masked(text, url)}") from None


@dataclass(frozen=True)
class Identity:
    """Which study this is, beyond its name (a storage removed and made again holds another
    study of the same name): `key`, random, recorded in the study when charseq makes it;
    `upgraded` when this load gave it to a study an earlier charseq made without one."""

    key: str
    upgraded: bool = False
    made: bool = False  # the study was made by this load


def load_study(sweep: Sweep, worker: int = 0) -> Any:
    """The sweep's study, made now or loaded (and checked to be the same search)."""
    return open_study(sweep, worker)[0]


def open_study(sweep: Sweep, worker: int = 0) -> tuple[Any, Identity]:
    """The sweep's study and its identity. Made by one process only (a second is told it is
    there, and loads it), so that its identity is written once, with its search."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # charseq says what happened: the report
    # Median: no pruning before 4 trials have finished, nor on a trial's first evaluation (too noisy).
    pruner = {"median": optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
              "hyperband": optuna.pruners.HyperbandPruner(),
              "none": optuna.pruners.NopPruner()}[sweep.pruner]
    seed = None if sweep.seed is None else sweep.seed + worker  # workers must not all draw the same
    options = {"study_name": sweep.study, "storage": open_storage(sweep.storage), "pruner": pruner,
               "sampler": optuna.samplers.TPESampler(seed=seed)}
    try:
        study = optuna.create_study(direction="minimize", load_if_exists=False, **options)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**options)
        return study, _identify(study, sweep, _recorded(study, sweep))
    return study, replace(_identify(study, sweep, None), made=True)


def _recorded(study: Any, sweep: Sweep) -> dict[str, Any] | None:
    """The search a study that was there records. Its maker writes it just after making it,
    so an empty study without one is waited for, briefly; None if it never comes (its maker
    died in between, or another program made it empty: charseq takes it). A study with
    trials, or another direction, and no record is not charseq's."""
    deadline = time.monotonic() + IDENTITY_WAIT
    while True:
        recorded = study.user_attrs.get(SEARCH)
        if recorded is not None:
            return dict(recorded)
        if study.get_trials(deepcopy=False) or len(study.directions) != 1 or study.direction.name != "MINIMIZE":
            raise UsageError(f"study {sweep.study!r} was not made by charseq sweep; give another --study")
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _identify(study: Any, sweep: Sweep, recorded: dict[str, Any] | None) -> Identity:
    """The study's identity. A study's trials compare only when they searched one space with
    one set of fixed settings: the first command records both (with a new identity, in one
    write: a reader sees all or nothing), and a later one that differs is refused."""
    made = {"params": sorted(repr(p) for p in sweep.params),
            "train": json.loads(json.dumps(sweep.train, sort_keys=True, default=str))}
    if recorded is None:
        key = uuid.uuid4().hex
        study.set_user_attr(SEARCH, {**made, "identity": key})
        return Identity(key)
    differ = [key for key in ("params", "train") if recorded.get(key) != made[key]]
    if differ:
        what = " and ".join({"params": "--param dimensions", "train": "fixed training options"}[k] for k in differ)
        raise UsageError(f"study {sweep.study!r} was started with other {what}; its trials would not compare: give "
                         "the same ones, or another --study")
    if "identity" in recorded:
        return Identity(recorded["identity"])
    study.set_user_attr(SEARCH, {**recorded, "identity": uuid.uuid4().hex})  # an earlier charseq's study
    return Identity(study.user_attrs[SEARCH]["identity"], upgraded=True)  # (as stored: another may have written too)


class _Reporter:
    """The callback that gives the trial each evaluation's loss, and stops the run when the
    pruner says the trial is hopeless."""

    def __init__(self, trial: Any):
        self.trial = trial
        self.pruned = False
        self.reports = 0

    @hookimpl
    def on_evaluation(self, trainer: Any, metrics: dict[str, Any]) -> None:
        value = metrics.get("val_loss", metrics.get("loss"))
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), self.reports)
        self.reports += 1
        if self.trial.should_prune():
            self.pruned = True
            trainer.stop_training = True


def objective(sweep: Sweep) -> Any:
    """The function a worker's study optimizes: one training run per trial."""
    optuna = require_optuna()
    from charseq.training.run import Run

    def run_trial(trial: Any) -> float:
        if _Stop.exit_code is not None:
            trial.set_user_attr("failure", INTERRUPTED)
            raise Interrupted(_Stop.exit_code)
        if _count(trial.study, leave_out=trial.number) >= sweep.trials:  # workers that finished together
            trial.study.stop()                                            # both asked for one more
            trial.set_user_attr("failure", f"{NOT_RUN}: the study already held {sweep.trials} trials")
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
        if reporter.pruned:
            raise optuna.TrialPruned(f"pruned after {reporter.reports} evaluations")
        loss = result.metrics.get("val_loss", result.metrics.get("loss"))
        if loss is None or not math.isfinite(loss):
            trial.set_user_attr("failure", f"the run ended without a finite loss ({loss})")
            raise CharseqError(trial.user_attrs["failure"])
        return float(loss)

    return run_trial


def work(sweep: Sweep, worker: int = 0, study: Any = None) -> None:
    """One worker: trials until the study holds `sweep.trials` (of any state) or time is up.
    `study`: the sweep's, when this process has loaded it already."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is in the report, with why
    study = study if study is not None else load_study(sweep, worker)
    optuna.storages.fail_stale_trials(study)  # a dead worker's trial, even when no new trial starts
    restore = _stop_on_signals()

    def enough(study: Any, trial: Any) -> None:
        if _count(study) >= sweep.trials or _Stop.exit_code is not None:
            study.stop()

    try:
        with blas.limited(sweep.threads):
            study.optimize(objective(sweep), timeout=sweep.timeout, catch=(Exception,), gc_after_trial=False,
                           callbacks=[enough], n_trials=None if _count(study) < sweep.trials else 0)
        _stop_if_asked()
    finally:
        restore()


class _Stop:
    """A SIGTERM or SIGHUP that came between runs (a run takes its own while it trains): noted
    here and acted on at the next safe point, never raised in the middle of a database call."""

    exit_code: int | None = None


def _stop_on_signals() -> Any:
    """SIGTERM and SIGHUP end the sweep as Ctrl-C does, with train's exit codes (143, 129).
    The function that puts the old handlers back."""
    import signal
    import threading

    _Stop.exit_code = None
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def note(signum: int, frame: Any) -> None:
        _Stop.exit_code = 128 + signum

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGHUP)}
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]


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


def _count(study: Any, leave_out: int | None = None) -> int:
    return sum(counted(t) for t in study.get_trials(deepcopy=False) if t.number != leave_out)


def _worker_main(sweep: Sweep, worker: int) -> None:  # in a child process
    """One worker of several: each failure one line on stderr, a thread's too (a storage
    that went away fails its heartbeat thread as well as its trial), never a traceback."""
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
            work(sweep, worker)
    except KeyboardInterrupt as exc:  # Ctrl-C reaches every worker: the parent says it once
        sys.exit(getattr(exc, "exit_code", 130))
    except CharseqError as exc:
        print(f"charseq: worker {worker}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:  # the storage's own failure, say: the parent sums up
        print(one_line(exc), file=sys.stderr)
        sys.exit(1)


def preflight(sweep: Sweep) -> None:
    """Refuse now, in one line, what every trial would fail on (a missing corpus, an unknown
    callback, a float for a whole-number setting): build, without training, the run of a
    trial whose numeric dimensions are at their low ends (choices left to the fixed options)."""
    import tempfile

    from charseq.training.run import Run

    train = dict(sweep.train)
    model_options = dict(train.pop("model_options", None) or {})
    for param in sweep.params:
        if param.kind == "choice":
            continue
        value = int(param.low) if param.kind == "int" else float(param.low)
        if param.name.startswith("model."):
            model_options[param.name.removeprefix("model.")] = value
        else:
            train[param.name] = value
    with tempfile.TemporaryDirectory(prefix="charseq-sweep-check-") as folder:
        callbacks = [("metrics", {"path": str(Path(folder) / "metrics.jsonl")}), *train.pop("callbacks", [])]
        Run.start(train.pop("corpus"), out=Path(folder) / "check.npz", callbacks=callbacks,
                  model_options=model_options or None, **train)


class DirectoryTaken(UsageError):
    """The directory holds runs, or files, that are not the study's (the CLI says which
    options to change)."""


def prepare_directory(sweep: Sweep, identity: Identity) -> None:
    """DIR/STUDY/, marked as the study's by its identity once the study is there: the runs of
    another study of that name (in another storage, or one removed and made again) are never
    written over. One process marks it; another finds the marker made, whole."""
    root = Path(sweep.directory)
    if root.exists() and not root.is_dir():
        raise UsageError(f"--dir {sweep.directory!r} is a file, not a folder")
    folder = root / sweep.study
    database = sqlite_path(sweep.storage)
    owner = {"study": sweep.study, "storage": str(database.resolve()) if database else _shown_url(sweep.storage),
             "identity": identity.key}
    try:
        if _marked(folder, owner, identity):
            return
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise DirectoryTaken(f"{folder} holds files that are not this study's")
        folder.mkdir(parents=True, exist_ok=True)
        if not _mark(folder, owner):
            _marked(folder, owner, identity)  # another process marked it first: this study's, or refused
    except OSError as exc:
        raise CharseqError(f"cannot make {folder}: {exc.strerror or exc}") from None


def _marked(folder: Path, owner: dict[str, str], identity: Identity) -> bool:
    """Whether `folder`'s marker names this study (False: it has none); another's is refused.
    One an earlier charseq wrote (no identity) is this study's when it names its storage and
    this load gave the study its first identity (the same earlier study): it is rewritten."""
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError):
        found = None
    found = found if isinstance(found, dict) else {}
    if found.get("identity") == owner["identity"]:
        return True
    same_place = found.get("storage") == owner["storage"] and found.get("study") == owner["study"]
    if same_place and "identity" not in found and identity.upgraded:
        _mark(folder, owner, replace=True)
        return True
    if same_place:
        raise DirectoryTaken(f"{folder} holds the runs of an earlier study {owner['study']!r} in {owner['storage']} "
                             "(removed, or made again, since), not of the one there now")
    raise DirectoryTaken(f"{folder} holds the runs of study {found.get('study', 'unknown')!r} in another storage "
                         f"({found.get('storage', 'unknown')})")


def _mark(folder: Path, owner: dict[str, str], replace: bool = False) -> bool:
    """Write `folder`'s marker whole (a reader never sees part of one): unless `replace`, only
    where there is none; False when another process wrote one first."""
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.json"
    temporary.write_text(json.dumps(owner) + "\n")
    try:
        if replace:
            os.replace(temporary, folder / MARKER)
        else:
            os.link(temporary, folder / MARKER)  # fails, rather than replaces, when there is one
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def run_sweep(sweep: Sweep, jobs: int = 1) -> None:
    """`jobs` workers on this machine, each in a process of its own (one: this process). The
    study is loaded here first: the tables and the study exist before the workers race to make
    them, and the directory is marked with the identity of a study that is there."""
    study, identity = open_study(sweep)
    try:
        prepare_directory(sweep, identity)
    except DirectoryTaken:  # a study made just now, for nothing: gone again, as if the command had not run
        if identity.made:
            require_optuna().delete_study(study_name=sweep.study, storage=study._storage)
        raise
    if jobs == 1:
        work(sweep, study=study)
        return
    import multiprocessing

    import signal

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no BLAS threads or locks inherited
    workers = [context.Process(target=_worker_main, args=(sweep, index), name=f"charseq-sweep-{index}")
               for index in range(jobs)]
    for process in workers:
        process.start()

    def stop(signum: int, frame: Any) -> None:  # SIGTERM or SIGHUP for the parent: for its workers too
        for process in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)
        raise Interrupted(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
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
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [p.name for p in workers if p.exitcode not in (0, None)]
    if failed:
        raise CharseqError(f"{len(failed)} of {jobs} workers ended with an error (exit codes "
                           f"{', '.join(str(p.exitcode) for p in workers if p.exitcode)}); the study keeps their "
                           "trials: run the command again to go on")


@dataclass
class Row:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    note: str
    directory: str | None = None  # where its run is, on the machine that ran it


def report(storage: str, study_name: str) -> tuple[list[Row], Any]:
    """The study's trials, and its best trial (None when none completed)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    check_storage(storage)
    database = sqlite_path(storage)
    if database is not None and not database.is_file():
        raise UsageError(f"no study {study_name!r}: {database} does not exist (run a sweep here first, or give its "
                         "--storage)")
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        raise UsageError(f"no study {study_name!r} in {_shown_url(storage)}; it holds "
                         f"{', '.join(repr(n) for n in names) or 'none'}") from None
    if study.user_attrs.get("charseq.search") is None and study.get_trials(deepcopy=False):
        raise UsageError(f"study {study_name!r} was not made by charseq sweep")
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        note = trial.user_attrs.get("failure", "")
        if trial.state.name == "FAIL" and not note:
            note = "its worker stopped without a word (killed, or its machine went down)"
        if trial.state.name == "PRUNED":
            note = f"pruned after {len(trial.intermediate_values)} evaluations"
        value = trial.value if trial.state.name == "COMPLETE" else None
        rows.append(Row(trial.number, trial.state.name.lower(), value, dict(trial.params), seconds, note,
                        trial.user_attrs.get("directory")))
    best = None
    if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        best = study.best_trial
    return rows, best
