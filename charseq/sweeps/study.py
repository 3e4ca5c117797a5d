"""A study: its settings (Sweep), its identity (a random key, recorded in the study with
its search space when charseq makes it, so that another study of the same name, in
another storage or one removed and made again, is told apart), the folder of its runs
(marked with that identity: a trial never replaces a file that is there), and its report."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from charseq.data.text import STDIN_NAMES, is_stream
from charseq.errors import CharseqError, UsageError, command, label
from charseq.files import publish
from charseq.runs.settings import TrainConfig
from charseq.sweeps.roster import is_roster
from charseq.sweeps.space import Param
from charseq.sweeps.storage import (DEFAULT_STORAGE, check_storage, holds_studies, open_storage, require_optuna, shown_url,
                                    sqlite_path)

DEFAULT_DIRECTORY = "sweeps"
PRUNERS = ("median", "hyperband", "none")
TRAIN_SETTINGS = {f.name for f in fields(TrainConfig)}
PRUNE_FROM = 50  # percent of its run a trial is through before the median pruner may stop it
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # the whole name (fullmatch: `$` lets a newline end it)
LONGEST_STUDY_NAME = 100  # it names a folder: well below a file system's 255 bytes
SEARCH = "charseq.search"  # the study's user attr: its search space, fixed settings and identity, in one write
MARKER = "study.json"  # in DIR/STUDY/: the identity of the study whose runs the folder holds
IDENTITY_WAIT = 5.0  # seconds to wait for the process that has just made a study to record it


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
        check_study_name(self.study)
        check_storage(self.storage)
        # Read once, as the system reads it (`link/..` is where the link points, not where the
        # text looks): the marker, the runs and what the study records all name one folder.
        self.directory = os.path.realpath(self.directory)
        corpus = self.train.get("corpus")
        argument = corpus.partition(":")[2] if isinstance(corpus, str) else ""
        if argument and is_stream(argument):  # refused before anything reads it
            what = "standard input" if argument in STDIN_NAMES else "a pipe"
            raise UsageError(f"corpus {corpus} reads {what}, which can be read once, and every trial reads its "
                             "corpus again: save the text to a file and give that")

    def trial_directory(self, number: int) -> Path:
        return Path(self.directory) / self.study / f"trial-{number:04d}"


def check_study_name(name: str) -> None:
    """Refuse a name no sweep makes: it names a folder, and never a roster (no colon)."""
    if not STUDY_NAME.fullmatch(name) or len(name) > LONGEST_STUDY_NAME:
        shown = name if len(name) <= LONGEST_STUDY_NAME else f"{name[:20]}... ({len(name)} long)"
        raise UsageError(f"{label('study')} {shown!r}: a study's name is letters, digits and - _ . (at most "
                         f"{LONGEST_STUDY_NAME} of them: it names a folder under {label('dir')})")


@dataclass(frozen=True)
class Identity:
    """Which study this is, beyond its name (a storage removed and made again holds another
    study of the same name): `key`, random, recorded in the study when charseq makes it;
    `upgraded` when this load gave it to a study an earlier charseq made without one."""

    key: str
    upgraded: bool = False
    made: bool = False  # the study was made by this load


def load_study(sweep: Sweep) -> Any:
    """The sweep's study, made now or loaded (and checked to be the same search)."""
    return open_study(sweep)[0]


def open_study(sweep: Sweep) -> tuple[Any, Identity]:
    """The sweep's study and its identity. Made by one process only (a second is told it is
    there, and loads it), so that its identity is written once, with its search. Its sampler
    is unseeded: a worker seeds its own once it has its number (charseq.sweeps.roster)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # charseq says what happened: the report
    # Median: no pruning before 4 trials have finished, nor before a trial is half way through
    # its run (its reports' steps are percents): a schedule fitted to the run's length lowers
    # the loss most in its second half, so early losses rank trials poorly.
    pruner = {"median": optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=PRUNE_FROM),
              "hyperband": optuna.pruners.HyperbandPruner(),
              "none": optuna.pruners.NopPruner()}[sweep.pruner]
    options = {"study_name": sweep.study, "storage": open_storage(sweep.storage), "pruner": pruner}
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
            raise UsageError(f"study {sweep.study!r} was not made by {command('sweep')}; give another "
                             f"{label('study')}")
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
        what = " and ".join({"params": f"{label('param')} dimensions", "train": "fixed training options"}[k]
                            for k in differ)
        raise UsageError(f"study {sweep.study!r} was started with other {what}; its trials would not compare: give "
                         f"the same ones, or another {label('study')}")
    if "identity" in recorded:
        return Identity(recorded["identity"])
    study.set_user_attr(SEARCH, {**recorded, "identity": uuid.uuid4().hex})  # an earlier charseq's study
    return Identity(study.user_attrs[SEARCH]["identity"], upgraded=True)  # (as stored: another may have written too)


def preflight(sweep: Sweep) -> None:
    """Refuse now, in one line, what every trial would fail on (a missing corpus, an unknown
    callback, a float for a whole-number setting): build, without training, the run of a
    trial whose numeric dimensions are at their low ends (choices left to the fixed options)."""
    import tempfile

    from charseq.training.run import Run

    train = dict(sweep.train)
    model_options = dict(train.pop("model_options", None) or {})
    _check_values(sweep.params, train)
    fixed_options = dict(model_options)
    for param in sweep.params:
        if param.kind == "choice":
            if param.name == "model":  # the model's options are the first choice's
                train["model"] = param.choices[0]
            continue
        value = param.extremes[0]
        if param.name.startswith("model."):
            model_options[param.name.removeprefix("model.")] = value
        else:
            train[param.name] = value
    with tempfile.TemporaryDirectory(prefix="charseq-sweep-check-") as folder:
        callbacks = [("metrics", {"path": str(Path(folder) / "metrics.jsonl")}), *train.pop("callbacks", [])]
        run = Run.start(train.pop("corpus"), out=Path(folder) / "check.npz", callbacks=callbacks,
                        model_options=model_options or None, **train)
    searched_model = any(param.name == "model" for param in sweep.params)
    _check_models(sweep.params, run.spec.model["name"], fixed_options if searched_model else run.spec.model["options"],
                  run.model.vocab_size, run.spec.config.hidden_size)


def _check_models(params: Sequence[Param], fixed: str, options: dict[str, Any], vocab_size: int,
                  hidden_size: int) -> None:
    """Each model a sweep may draw (`fixed`, with its `options`, unless the model is searched),
    with each value of each model option searched (choices, and both ends of a range), built
    at the run's size, and at each searched size, without its weights: refused now, in one
    line, naming the model (a transformer's heads must divide its width)."""
    from charseq.models.build import build_model

    searched = {param.name: param for param in params}
    models = list(searched["model"].choices) if "model" in searched else [fixed]
    sizes = list(searched["hidden_size"].extremes) if "hidden_size" in searched else [hidden_size]
    values = {name.removeprefix("model."): param.extremes for name, param in searched.items()
              if name.startswith("model.")}
    for model in models:
        for size in sizes:
            build_model(str(model), options, vocab_size, int(size), seed=None)
            for option, chosen in values.items():
                for value in chosen:
                    build_model(str(model), {**options, option: value}, vocab_size, int(size), seed=None)


def _check_values(params: Sequence[Param], train: dict[str, Any]) -> None:
    """Each choice of a training setting, and each end of its range, as the setting takes it
    beside the sweep's fixed settings: refused now, in one line, rather than by its trials."""
    from charseq.models.build import model_choice, model_defaults

    fixed = {name: value for name, value in train.items() if name in TRAIN_SETTINGS}
    if any(param.name == "time_limit" for param in params):  # (epochs of 0 go with a limit searched over)
        fixed.setdefault("time_limit", 1.0)
    # Each model the trials may train takes its own suggestions below what is fixed (a
    # transformer's rate and weight decay), as a run does; the corpus's are not known here.
    models = [choice for param in params if param.name == "model" for choice in param.choices] or [train.get("model")]
    for model in models:
        try:
            suggested = model_defaults(model_choice(str(model))[0]) if model else {}
        except UsageError:
            continue  # an unknown model: refused in its own words as the run is built
        for param in params:
            if param.name not in TRAIN_SETTINGS:
                continue  # the model and its options: checked as the run is built
            for value in param.extremes:
                try:
                    TrainConfig.for_corpus({}, suggested, **{**fixed, param.name: value})
                except UsageError as exc:
                    raise UsageError(f"{label('param')} {param.name.replace('_', '-')}: {exc}") from None


class DirectoryTaken(UsageError):
    """The directory holds runs, or files, that are not the study's (the CLI says which
    options to change)."""


def prepare_directory(sweep: Sweep, identity: Identity) -> None:
    """DIR/STUDY/, marked as the study's by its identity once the study is there: the runs of
    another study of that name (in another storage, or one removed and made again) are never
    written over. One process marks it; another finds the marker made, whole."""
    root = Path(sweep.directory)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{label('dir')} {sweep.directory!r} is a file, not a folder")
    folder = root / sweep.study
    database = sqlite_path(sweep.storage)
    owner = {"study": sweep.study, "storage": str(database.resolve()) if database else shown_url(sweep.storage),
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
    # The temporary file goes beside the folder, not in it: a folder with anything in it is
    # another study's to a process that looks at it meanwhile.
    return publish(folder / MARKER, (json.dumps(owner) + "\n").encode(), replace=replace,
                   temp_directory=folder.parent)


@dataclass
class Row:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    note: str
    directory: str | None = None  # where its run is, on the machine that ran it (an earlier release: as --dir gave it)
    checkpoint: str | None = None  # its checkpoint's absolute path there (None: recorded by an earlier release)
    worker: int | None = None  # the number of the worker that ran it (charseq.sweeps.roster)
    host: str | None = None  # the machine that ran it

    def checkpoint_found(self) -> str | None:
        """Whether its checkpoint is "here", "missing" (it ran here, and the file is gone), or
        "elsewhere" (another machine ran it); None where no checkpoint is recorded."""
        import socket

        if self.checkpoint is None:
            return None
        if self.host is not None and self.host != socket.gethostname():
            return "elsewhere"
        return "here" if Path(self.checkpoint).is_file() else "missing"


def report(storage: str, study_name: str) -> tuple[list[Row], Row | None]:
    """The study's trials, and its best trial (None when none completed)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    check_study_name(study_name)
    check_storage(storage)
    database = sqlite_path(storage)
    if database is not None and not database.is_file():
        raise UsageError(f"no study {study_name!r}: {database} does not exist (run a sweep here first, or give its "
                         f"{label('storage')})")
    if not holds_studies(storage):  # (opened as a sweep opens it, Optuna would make its tables there)
        raise UsageError(f"no study {study_name!r}: {shown_url(storage)} holds no {command('sweep')} study")
    opened = open_storage(storage, read_only=True)
    try:
        study = optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened) if not is_roster(s.study_name)]
        raise UsageError(f"no study {study_name!r} in {shown_url(storage)}; it holds "
                         f"{', '.join(repr(n) for n in names) or 'none'}") from None
    if study.user_attrs.get("charseq.search") is None and study.get_trials(deepcopy=False):
        raise UsageError(f"study {study_name!r} was not made by {command('sweep')}")
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        attrs = trial.user_attrs
        note = _recorded_as(attrs, "failure", str) or ""
        if trial.state.name == "FAIL" and not note:
            note = "its worker stopped without a word (killed, or its machine went down)"
        if trial.state.name == "PRUNED":
            at = _recorded_as(attrs, "pruned_at", int)  # (trials of before 0.7.1: after how many evaluations)
            note = f"pruned {at} % of the way through its run" if at is not None else \
                f"pruned after {len(trial.intermediate_values)} evaluations"
        value = trial.value if trial.state.name == "COMPLETE" else None
        rows.append(Row(trial.number, trial.state.name.lower(), value, dict(trial.params), seconds, note,
                        _recorded_as(attrs, "directory", str), _recorded_as(attrs, "checkpoint", str),
                        _recorded_as(attrs, "worker", int), _recorded_as(attrs, "host", str)))
    # The best of these rows (a trial another worker completes meanwhile is in neither).
    done = [row for row in rows if row.value is not None]
    return rows, min(done, key=lambda row: (row.value, row.number)) if done else None


def _recorded_as(attrs: dict[str, Any], key: str, kind: type) -> Any:
    """A trial's attribute, as the storage holds it, when it is of the kind charseq records
    (anyone may have written to the storage); else None, as if absent."""
    value = attrs.get(key)
    return value if type(value) is kind else None
