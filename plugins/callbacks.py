"""Bundled training callbacks, with Keras's semantics: early stopping, checkpoints, a metrics log.

Each checks what it can in on_train_begin (the monitored metric, the template's fields),
so that a mistake stops the run before its first step rather than at an epoch's end.
"""

from __future__ import annotations

import json
import math
import string
import warnings
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from charseq import Callback, MonitorCallback, hookimpl
from charseq.errors import CharseqWarning, SaveError, UsageError
from charseq.files import atomic_write, shown
from charseq.training.outputs import METRICS, identity


class EarlyStopping(MonitorCallback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs.

    monitor: the metric to watch (none: val_loss when text is held out, else loss)
    patience: epochs without improvement before stopping (0 and 1: the first such epoch)
    min_delta: the smallest change that counts as an improvement
    mode: min (lower is better) or max
    baseline: a value the metric must beat before patience starts counting again (none: off)
    restore_best_weights: end with the weights of the best epoch
    start_from_epoch: epochs to let pass before watching
    """

    who = "early-stopping"

    def __init__(
        self,
        monitor: str | None = None,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "min",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        if patience < 0:
            raise UsageError(f"patience must be 0 or more, got {patience}")
        if start_from_epoch < 0:
            raise UsageError(f"start_from_epoch must be 0 or more, got {start_from_epoch}")
        if not math.isfinite(min_delta):
            raise UsageError(f"min_delta must be a finite number, got {min_delta}")
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, trainer):
        self.watch(trainer)
        self._shapes = {name: value.shape for name, value in trainer.model.params.items()}
        self._dtype = trainer.model.dtype
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_metrics: dict | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, trainer, epoch, metrics):
        current = float(metrics[self.watched])
        if epoch <= self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy(trainer.model.params)  # so there is always something to restore
            self.best_metrics = dict(metrics)
        self.wait += 1
        if self.improved(current):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _copy(trainer.model.params)
                self.best_metrics = dict(metrics)
            # Patience restarts only once both the baseline and the previous best are beaten.
            if self.baseline is None or self.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 1:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer, metrics):
        if self.restore_best_weights and self.best_weights is not None:
            for name, value in self.best_weights.items():
                np.copyto(trainer.model.params[name], value)  # into the arrays the optimizer updates
            if self.best_metrics is not None and self.best_metrics.get("epoch") != trainer.epoch:
                trainer.weights_from = self.best_metrics

    def state_dict(self) -> dict:
        """The counters and best value (and weights) a resumed run continues from."""
        state: dict[str, Any] = {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                                 "best_epoch": self.best_epoch, "best_metrics": self.best_metrics}
        if self.best_weights is not None:
            state.update({f"best_weights.{name}": value for name, value in self.best_weights.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Checked against this run's model before training starts: a state from another
        model's weights, or of the wrong types, is refused."""
        try:
            wait, stopped, best_epoch = (_whole(state[key]) for key in ("wait", "stopped_epoch", "best_epoch"))
            best = float(state["best"])
            best_metrics = state.get("best_metrics")
            if best_metrics is not None:
                _check_metrics(best_metrics)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"early-stopping's saved state is not valid ({exc})") from None
        weights = {key.split(".", 1)[1]: value for key, value in state.items() if key.startswith("best_weights.")}
        if weights:
            if set(weights) != set(self._shapes):
                raise UsageError(f"early-stopping's saved weights are {sorted(weights)}, not this model's parameters")
            for name, value in weights.items():
                if (not isinstance(value, np.ndarray) or value.shape != self._shapes[name]
                        or value.dtype != self._dtype):
                    raise UsageError(f"early-stopping's saved {name} does not fit this model ({name} is "
                                     f"{self._dtype}{list(self._shapes[name])})")
        self.wait, self.stopped_epoch, self.best, self.best_epoch = wait, stopped, best, best_epoch
        self.best_metrics = best_metrics
        self.best_weights = weights or None


class ModelCheckpoint(MonitorCallback):
    """Save the run every `every` epochs; with save_best_only, only when `monitor` improves.

    `path` defaults to the run's --out and may be a template of the epoch's metrics:
    'runs/ckpt-{epoch:03d}-{val_loss:.3f}.npz' (its directory is made when missing). With
    keep_last=K, only the K newest files this process saved are kept; files written before
    a resume are never deleted.

    path: the file, or a template such as runs/ckpt-{epoch:03d}.npz (none: the run's --out)
    every: save every this many epochs
    monitor: with save_best_only, the metric to watch (none: val_loss, else loss)
    save_best_only: save only when the monitored metric improves
    mode: min (lower is better) or max
    keep_last: keep only the newest this many of the files this process saved (0: all; earlier ones are left)
    """

    who = "checkpoint"

    output_options = {"path": "checkpoint"}

    def __init__(
        self,
        path: str | None = None,
        every: int = 1,
        monitor: str | None = None,
        save_best_only: bool = False,
        mode: str = "min",
        keep_last: int = 0,
    ):
        if every < 1:
            raise UsageError(f"checkpoint every must be at least 1, got {every}")
        if keep_last < 0:
            raise UsageError(f"keep_last must be 0 (keep all) or more, got {keep_last}")
        if path is not None and not str(path).strip():
            raise UsageError("checkpoint path must not be empty")
        super().__init__(monitor, mode)
        self.keep_last = int(keep_last)
        self.path = None if path is None else str(path)
        self.every = int(every)
        self.save_best_only = save_best_only
        self.saved: list[Path] = []

    def on_train_begin(self, trainer):
        template = self.path if self.path is not None else (str(trainer.out) if trainer.out else None)
        if template is None:
            raise UsageError("checkpoint needs path=FILE (or a run with --out)")
        _check_template(template, trainer.metric_names)
        self._template = template
        if self.save_best_only:
            self.watch(trainer)
        self.best = self.worst
        self.saved = []  # only this process's files are ever deleted

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch % self.every:
            return
        if self.save_best_only:
            current = float(metrics[self.watched])
            if not self.improved(current):
                return
            self.best = current
        path = Path(self._template.format(**{**metrics, "step": trainer.step, "epoch": epoch}))
        trainer.save_checkpoint(path, then=self._saved)

    def _saved(self, path: Path) -> None:
        if path in self.saved:
            self.saved.remove(path)
        self.saved.append(path)
        while self.keep_last and len(self.saved) > self.keep_last:
            old = self.saved.pop(0)
            try:
                old.unlink(missing_ok=True)
            except OSError as exc:
                warnings.warn(f"checkpoint: could not delete {shown(old)} ({exc.strerror})", CharseqWarning,
                              stacklevel=2)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.best = float(state["best"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"checkpoint's saved state is not valid ({exc!r})") from None


def _check_template(template: str, names: list[str]) -> None:
    """Format the template once with stand-in values, so a bad field fails now, not at an
    epoch's end."""
    fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    for field in fields:
        base = field.split(".")[0].split("[")[0]
        if base not in names:
            raise UsageError(f"checkpoint path {shown(template)!r} uses {{{field}}}, which this run does not have; "
                             f"it has {', '.join(names)}")
    stand_ins = {name: (1 if name in ("epoch", "step") else 1.5) for name in names}
    try:
        template.format(**stand_ins)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise UsageError(f"checkpoint path template {shown(template)!r} is malformed: {exc}") from None


class MetricsLog(Callback):
    """Write one JSON line per evaluation: step, epoch, losses, bpc, lr, chars/s, wall time.

    A resumed run writes the file anew from the run's history, so it holds each evaluation
    once. When the file holds the same run further along (the run retraces itself from an
    earlier checkpoint, or a crash left lines after the last save), it is left as it is
    until the run passes its last line, and only then written anew: a retrace interrupted
    on the way never cuts the log back. A line that cannot be written is a warning, and
    training goes on.

    path: the file to write (JSON lines)
    """

    output_options = {"path": "metrics"}

    def __init__(self, path: str):
        if not str(path).strip():
            raise UsageError("metrics needs a file: metrics:path=FILE")
        self.path = Path(path)
        self._file: TextIO | None = None
        self._forced = False

    def on_train_begin(self, trainer):
        self._run_id = (trainer.run or {}).get("id")
        self._hold_until = -1
        if self._file is not None:  # fit() again in the same process
            self._file.close()
            self._file = None
        self._forced = trainer.force  # the user's word: another run's log here may be replaced
        if self._run_id is not None and self.path.is_file():
            run_id, last = identity(self.path, METRICS)
            if run_id == self._run_id and last > trainer.step:
                self._hold_until = last  # retracing: leave the file until the run is past it
                return
        self._start_anew(trainer)

    def _start_anew(self, trainer) -> None:
        """The file as the run's history has it so far, open for the lines to come; never over
        another run's log (one started alike may have taken the path since the run's check)
        unless the run was forced."""
        owner, _ = identity(self.path, METRICS) if self.path.is_file() else (None, -1)
        line = {self._run_id, *(parent.get("id") for parent in (trainer.run or {}).get("parents", []))}
        if owner is not None and self._run_id is not None and owner not in line and not self._forced:
            self._give_up(SaveError(shown(self.path), "it holds another run's metrics now"))
            return
        lines = "".join(self._line(entry) for entry in trainer.history)
        try:
            atomic_write(self.path, lambda f: f.write(lines.encode("utf-8")), durable=False)
            self._file = self.path.open("a", encoding="utf-8")
        except (OSError, SaveError) as exc:
            self._give_up(exc)

    def on_evaluation(self, trainer, metrics):
        if self._hold_until >= 0:
            if metrics["step"] <= self._hold_until:
                return
            self._hold_until = -1
            self._start_anew(trainer)  # the history holds this evaluation already
            return
        if self._file is None:
            return
        try:
            self._file.write(self._line(metrics))
            self._file.flush()
        except OSError as exc:
            self._give_up(exc)

    def on_train_end(self, trainer, metrics):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _line(self, metrics: dict) -> str:
        record = {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                  for key, value in metrics.items()}
        if self._run_id is not None:
            record = {"run": self._run_id, **record}
        return json.dumps(record) + "\n"

    def _give_up(self, exc: Exception) -> None:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        warnings.warn(f"cannot write metrics to {shown(self.path)} ({reason}); training goes on without them",
                      CharseqWarning, stacklevel=2)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._file = None


def _check_metrics(metrics: Any) -> None:
    """An evaluation's metrics as a state holds them: numbers or null, a whole epoch and step."""
    if not isinstance(metrics, dict):
        raise TypeError("best_metrics is not a mapping")
    for key, value in metrics.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"best_metrics.{key} is {value!r}, not a number")
    for key in ("epoch", "step"):
        _whole(metrics.get(key))


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not a whole number")
    return value


def _copy(params) -> dict[str, np.ndarray]:
    return {name: value.copy() for name, value in params.items()}


@hookimpl
def register_callbacks(register):
    register("early-stopping", EarlyStopping)
    register("checkpoint", ModelCheckpoint)
    register("metrics", MetricsLog)
