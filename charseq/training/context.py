"""What a callback sees of a run in training, and the base classes callbacks may build on.

Keras gives a callback ``self.model`` and ``logs``; charseq gives each hook a
``TrainingContext`` under the argument name ``trainer``: the model, the corpus, the
settings, where training is, the history, the run's paths, ``stop_training`` and
``save_checkpoint``. That is the whole promise (docs/plugins.md). A callback written
against an earlier release that reads another attribute of the trainer still gets it, with
a DeprecationWarning: the trainer's other attributes are its own, and may change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charseq.errors import CallbackDeprecation, UsageError

if TYPE_CHECKING:
    from charseq.data.corpus import Corpus
    from charseq.models.base import Model
    from charseq.runs.settings import TrainConfig

# What a callback may set (the rest of the context is read-only).
_SETTABLE = ("stop_training", "weights_from")


class TrainingContext:
    """A run in training, as its callbacks see it."""

    __slots__ = ("_trainer",)

    def __init__(self, trainer: Any):  # a Trainer (not imported: the trainer imports this module)
        object.__setattr__(self, "_trainer", trainer)

    @property
    def model(self) -> Model:
        """The model being trained (its `params` by name are the arrays the optimizer updates)."""
        return self._trainer.model

    @property
    def corpus(self) -> Corpus:
        return self._trainer.corpus

    @property
    def config(self) -> TrainConfig:
        """The run's settings."""
        return self._trainer.config

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self._trainer.epoch

    @property
    def step(self) -> int:
        """Optimisation steps completed, in all."""
        return self._trainer.step

    @property
    def step_in_epoch(self) -> int:
        """Steps of the current epoch completed."""
        return self._trainer.step_in_epoch

    @property
    def steps_per_epoch(self) -> int:
        return self._trainer.steps_per_epoch

    @property
    def planned_steps(self) -> int | None:
        """The step a time-limited run ends at, planned once it has measured its pace (its
        epochs may end it first); None before that, and without a time limit."""
        return self._trainer.planned_steps

    @property
    def end_step(self) -> int | None:
        """The step the run ends at unless a callback stops it: its epochs' end, or its time
        limit's plan if sooner; None while neither is known."""
        return self._trainer.end_step

    @property
    def time_up(self) -> bool:
        """True once the time limit has ended the run (at its planned step, or past its
        budget): the evaluation a callback sees then is the run's last."""
        return self._trainer.time_up

    @property
    def wall_time(self) -> float:
        """Seconds of training so far, the runs this one resumes included: what a time
        limit counts."""
        return self._trainer.wall_time

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every evaluation's metrics, oldest first."""
        return self._trainer.history

    @property
    def metric_names(self) -> list[str]:
        """The keys this run's metrics have (`val_loss` only when text is held out)."""
        return self._trainer.metric_names

    @property
    def out(self) -> Path | None:
        """The run's checkpoint path (None for a Trainer used without a Run)."""
        return self._trainer.out

    @property
    def run(self) -> dict[str, Any] | None:
        """The run's description as its checkpoint records it (its `id`, its `parents`), or None."""
        return self._trainer.run

    @property
    def force(self) -> bool:
        """Whether the run may replace files that are not its own (Run.start(force=True)):
        a callback that writes files asks it before replacing another run's."""
        return self._trainer.force

    @property
    def stop_training(self) -> bool:
        """Set it to True to stop training once this epoch ends."""
        return self._trainer.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._trainer.stop_training = value

    @property
    def weights_from(self) -> dict[str, Any] | None:
        """The metrics of the evaluation whose weights the model holds, when a callback put
        back earlier weights (early stopping's restore_best_weights); None: the last ones."""
        return self._trainer.weights_from

    @weights_from.setter
    def weights_from(self, metrics: dict[str, Any] | None) -> None:
        self._trainer.weights_from = metrics

    def save_checkpoint(self, path: str | Path, then: Callable[[Path], None] | None = None) -> None:
        """Save the whole run (resumable) to `path`, then call `then(path)`; asked from a
        hook, the save happens once every callback has seen the event."""
        self._trainer.save_checkpoint(path, then)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._trainer, name)  # AttributeError for what the trainer lacks too
        warnings.warn(f"trainer.{name} is not part of what a callback is given (docs/plugins.md, Writing a "
                      "callback); it is the trainer's own and may change in a later release",
                      CallbackDeprecation, stacklevel=2)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SETTABLE:
            object.__setattr__(self, name, value)  # the property's setter
            return
        if isinstance(getattr(type(self), name, None), property):
            raise AttributeError(f"trainer.{name} is read-only for a callback (it may set "
                                 f"{' and '.join(_SETTABLE)})")
        warnings.warn(f"setting trainer.{name} is not part of what a callback may do (docs/plugins.md, Writing a "
                      "callback); it changes the trainer's own state, which may change in a later release",
                      CallbackDeprecation, stacklevel=2)
        setattr(self._trainer, name, value)


class Callback:
    """A base for callbacks: every hook is here and does nothing, so a subclass defines only
    the ones it needs (no `@hookimpl` needed on them). Each hook gets the run's
    `TrainingContext` as `trainer`."""

    def on_train_begin(self, trainer: TrainingContext) -> None:
        """Training is about to start (or resume): check the options against the run here."""

    def on_step_end(self, trainer: TrainingContext, step: int, loss: float) -> None:
        """One optimisation step is done; `loss` is its mean loss per character."""

    def on_evaluation(self, trainer: TrainingContext, metrics: dict[str, Any]) -> None:
        """An evaluation is done: at each epoch's end and every `eval_every` steps."""

    def on_epoch_end(self, trainer: TrainingContext, epoch: int, metrics: dict[str, Any]) -> None:
        """Epoch `epoch` (from 1) is done; `metrics` are its last evaluation's."""

    def on_train_end(self, trainer: TrainingContext, metrics: dict[str, Any]) -> None:
        """Training is over, stopped early or not; `metrics` are the last epoch's."""


def overrides(callback: object, hook: str) -> bool:
    """Whether `callback` has `hook` of its own: a Callback's inherited no-op is skipped (so
    a run with no callback on each step skips on_step_end entirely)."""
    if not isinstance(callback, Callback):
        return True
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


class MonitorCallback(Callback):
    """A callback that watches one metric for improvement, as early stopping and best-only
    checkpoints do: `monitor` (None: val_loss when text is held out, else loss), `mode`
    (min: lower is better, or max) and `min_delta` (the smallest change that counts).
    Call `watch(trainer)` in on_train_begin; `improved(value)` then says whether a value
    beats the best so far, and `best` holds it."""

    who = "callback"  # how messages name it: early-stopping, checkpoint

    def __init__(self, monitor: str | None = None, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise UsageError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best = self.worst

    @property
    def worst(self) -> float:
        """Where `best` starts: any finite value improves on it."""
        return math.inf if self.mode == "min" else -math.inf

    def watch(self, trainer: TrainingContext) -> str:
        """The metric to watch in this run, checked against its metric names (a name it does
        not have is refused before the first step); `best` starts anew."""
        names = trainer.metric_names
        if self.monitor is None:
            self.watched = "val_loss" if "val_loss" in names else "loss"
        elif self.monitor not in names:
            raise UsageError(f"{self.who} cannot monitor {self.monitor!r}: this run's metrics are {', '.join(names)}")
        else:
            self.watched = self.monitor
        self.best = self.worst
        return self.watched

    def improved(self, current: float, best: float | None = None) -> bool:
        """Whether `current` beats `best` (default: the best so far) by more than min_delta."""
        best = self.best if best is None else best
        return current < best - self.min_delta if self.mode == "min" else current > best + self.min_delta
