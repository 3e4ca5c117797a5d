"""Bundled training callbacks, with Keras's semantics: early stopping and checkpointing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from charseq import checkpoint, hookimpl
from charseq.errors import UsageError


def _improvement_test(mode: str, min_delta: float):
    if mode not in ("min", "max"):
        raise UsageError(f"mode must be 'min' or 'max', got {mode!r}")
    if mode == "min":
        return lambda current, best: current < best - min_delta
    return lambda current, best: current > best + min_delta


def _monitored(metrics: dict, monitor: str | None) -> float:
    """The monitored value; monitor None means val_loss when there is one, else loss."""
    if monitor is None:
        monitor = "val_loss" if "val_loss" in metrics else "loss"
    if monitor not in metrics:
        raise UsageError(f"cannot monitor {monitor!r}: the metrics are {', '.join(metrics)}")
    return float(metrics[monitor])


class EarlyStopping:
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs."""

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
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self._improved = _improvement_test(mode, self.min_delta)
        self.mode = mode

    @hookimpl
    def on_train_begin(self, trainer):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights = None

    @hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        current = _monitored(metrics, self.monitor)
        if epoch <= self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy(trainer.model.params)  # so there is always something to restore
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _copy(trainer.model.params)
            # Patience restarts only once both the baseline and the previous best are beaten.
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 1:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    @hookimpl
    def on_train_end(self, trainer, metrics):
        if self.restore_best_weights and self.best_weights is not None:
            for name, value in self.best_weights.items():
                trainer.model.params[name][...] = value

    def state_dict(self) -> dict:
        """The counters and best value (and weights) a resumed run continues from."""
        state = {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                 "best_epoch": self.best_epoch}
        if self.best_weights is not None:
            state.update({f"best_weights.{name}": value for name, value in self.best_weights.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        weights = {key.split(".", 1)[1]: value for key, value in state.items() if key.startswith("best_weights.")}
        self.best_weights = weights or None


class ModelCheckpoint:
    """Save a checkpoint every `every` epochs; with save_best_only, only when `monitor` improves.

    `path` may be a template of the epoch's metrics: 'ckpt-{epoch:03d}-{loss:.3f}.npz';
    with keep_last=K only the K newest files this callback saved are kept.
    """

    def __init__(
        self,
        path: str,
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
        self.keep_last = int(keep_last)
        self.path = str(path)
        self.every = int(every)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = mode
        self._improved = _improvement_test(mode, 0.0)
        self.saved: list[Path] = []
        try:
            self.path.format(epoch=0, step=0, loss=0.0, seconds=0.0)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"checkpoint path template {self.path!r} is malformed: {exc!r}") from None

    @hookimpl
    def on_train_begin(self, trainer):
        self.best = math.inf if self.mode == "min" else -math.inf

    @hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch % self.every:
            return
        if self.save_best_only:
            current = _monitored(metrics, self.monitor)
            if not self._improved(current, self.best):
                return
            self.best = current
        path = Path(self.path.format(**{"step": trainer.step, **metrics}))
        checkpoint.save(path, trainer.to_checkpoint())
        if path in self.saved:
            self.saved.remove(path)
        self.saved.append(path)
        while self.keep_last and len(self.saved) > self.keep_last:
            self.saved.pop(0).unlink(missing_ok=True)

    def state_dict(self) -> dict:
        return {"best": self.best, "saved": [str(p) for p in self.saved]}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.saved = [Path(p) for p in state["saved"]]


class MetricsLog:
    """Write one JSON line per evaluation: step, epoch, losses, bpc, lr, chars/s, wall time."""

    def __init__(self, path: str):
        self.path = Path(path)

    @hookimpl
    def on_train_begin(self, trainer):
        if trainer.step == 0:
            self._file = self.path.open("w", encoding="utf-8")
            return
        # Resuming: keep the lines up to the checkpoint's step, dropping any a crashed run
        # wrote after it, and carry on below them.
        kept = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= trainer.step:
                        kept.append(line + "\n")
                except (ValueError, KeyError, TypeError):
                    continue
        self._file = self.path.open("w", encoding="utf-8")
        self._file.writelines(kept)

    @hookimpl
    def on_evaluation(self, trainer, metrics):
        record = {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                  for key, value in metrics.items()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    @hookimpl
    def on_train_end(self, trainer, metrics):
        self._file.close()


def _copy(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value.copy() for name, value in params.items()}


@hookimpl
def register_callbacks(register):
    register("early-stopping", EarlyStopping)
    register("checkpoint", ModelCheckpoint)
    register("metrics", MetricsLog)
