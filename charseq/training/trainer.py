"""The training loop: steps, evaluations and the callbacks of one run, and its own state.

What the loop needs from elsewhere: the settings (config.py), the batches of each epoch
(batches.py), the callbacks in order (callbacks.py) and the loss on held-out text
(evaluation.py). A Run (run.py) puts these together from a description and saves them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from charseq import blas
from charseq.training import budget
from charseq.training.batches import Batches
from charseq.training.callbacks import CallbackError, CallbackList
from charseq.training.context import TrainingContext
from charseq.checkpoints.format import STATE_NAME, Checkpoint, plain_json
from charseq.runs.settings import TrainConfig
from charseq.data.corpus import Corpus
from charseq.errors import CharseqError, CharseqWarning, UsageError, counted, label, setting
from charseq.training.contention import CoreWait
from charseq.training.evaluation import check_items_fit, evaluate, loss_metrics
from charseq.models.base import Model, flat_slice
from charseq.training.optimizers import make_optimizer


class Diverged(CharseqError):
    """The loss or the gradient stopped being a finite number."""


class Trainer:
    """Runs epochs of minibatch training over a corpus and calls the run's callbacks, in order.

    A callback asks training to stop by setting ``stop_training``; Ctrl-C (through a Run)
    sets ``interrupted``, and the loop then returns between two steps, without ending the
    epoch or calling on_train_end, so that the run can be saved and resumed exactly. A
    time limit ends the run at the step it planned (budget.py), part way through an epoch
    or not, with an evaluation of where it ended.
    """

    def __init__(self, model: Model, corpus: Corpus, config: TrainConfig,
                 callbacks: Iterable[object] | CallbackList = (), *, run: dict[str, Any] | None = None,
                 out: Path | None = None, saver: Callable[[Path], Path | None] | None = None, force: bool = False):
        if model.vocab_size != len(corpus.vocab):
            raise UsageError(f"model has {counted(model.vocab_size, 'symbol')} but corpus {corpus.name!r} has {len(corpus.vocab)}")
        self.model = model
        self.corpus = corpus
        self.config = config
        self.batches = Batches(corpus, config, streams=math.prod(model.state_shape(1)) > 0)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.val_ids = self.batches.val_ids  # held-out text (None for items: see batches.val_items)
        self.callbacks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
        self.optimizer = make_optimizer(config.optimizer, model.flat.size, model.dtype,
                                        [(flat_slice(model.flat, model.params[name]), config.input_lr_scale)
                                         for name in getattr(model, "input_weights", ())],
                                        [flat_slice(model.flat, value) for value in model.params.values()
                                         if value.ndim >= 2], config.weight_decay)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimisation steps completed
        self.step_in_epoch = 0  # steps of the current epoch completed
        self.stop_training = False  # set by a callback: stop once this epoch ends
        self.stopped_by: str | None = None  # the key of the callback that set stop_training
        self.planned_steps: int | None = None  # where the time limit ends the run, once its pace is measured
        self.time_up = False  # the time limit ended the run (at its planned step, or past the budget)
        self._stopwatch: budget.Stopwatch | None = None  # measures this fit()'s pace until the plan is made
        self.ended = False  # on_train_end has run
        self.interrupted: int | None = None  # set (to a signal number) to stop at the next step boundary
        self.history: list[dict[str, Any]] = []  # one entry per evaluation
        # The history entry that describes the weights as they stand, when it is not the last
        # (early stopping that put back an earlier epoch's weights sets it).
        self.weights_from: dict[str, Any] | None = None
        self.run = run  # the description of the run, when a Run drives this
        self.out = out  # the run's checkpoint (the default of the checkpoint callback)
        self.saver = saver  # how save_checkpoint writes (a Run's)
        self.force = force  # the run may replace files that are not its own
        self.context = TrainingContext(self)  # what callbacks are given
        self._rng = np.random.default_rng(config.seed)  # data order and dropout masks
        # A random-window corpus's windows are the generator's first draws, made here so that
        # every saved random state, even one saved before the first step, comes after them.
        self._windows = corpus.windows(config.seq_len, self._rng) if self.batches.random_windows else None
        self._order: np.ndarray | None = None  # this epoch's order of random windows or items
        self._h: np.ndarray | None = None  # the state carried into the next window
        self._since_eval: list[float] = [0.0, 0, 0.0]  # loss sum, steps and seconds since the last evaluation
        self._wall_time_before = 0.0  # training time of the runs this one resumes, and of earlier fit()s
        self._training_since: float | None = None  # when this fit() began, while it trains
        self._started: float | None = None
        self._eval_started = 0.0
        self._callback_states: dict[str, dict[str, Any]] = {}  # handed to the callbacks once training begins
        self.unsaved_state: set[str] = set()  # callbacks whose state checkpoints leave out (it failed)
        self._dispatching = False
        self._pending_saves: list[tuple[Path, Callable[[Path], None] | None]] = []
        self._grad_flat, self._grads = model.gradient_buffer()
        self._blas_threads: int | None = None  # the BLAS threads this run trains with (where known)
        self._recorded_threads: int | None = None  # those of the run it resumes

    @property
    def metric_names(self) -> list[str]:
        """The keys every evaluation's metrics have in this run (for templates and monitors)."""
        names = ["epoch", "step", "loss", "bpc", "perplexity"]
        if self.batches.held_out is not None:
            names += ["val_loss", "val_bpc", "val_perplexity"]
        return names + ["lr", "chars_per_sec", "seconds", "wall_time"]

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics of the weights as they stand: the last evaluation's, or those of the
        epoch whose weights were put back."""
        if self.weights_from is not None:
            return self.weights_from
        return self.history[-1] if self.history else {}

    # -- the loop ----------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until config.epochs are done, a callback stops it, its time limit ends it,
        or it is interrupted; returns the metrics of the weights it ends with."""
        # A diverging run is reported as one clear error, not as numpy warnings.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            try:
                return self._fit()
            finally:  # the clock stops with training: what is saved and said after is the same time
                self._wall_time_before, self._training_since = self.wall_time, None

    def _fit(self) -> dict[str, Any]:
        config = self.config
        windows = self._windows
        report_steps = self.callbacks.implement("on_step_end")
        if self._started is not None and not self._callback_states:
            # fit() again in the same process (after an interruption, or for more epochs):
            # callbacks reset themselves in on_train_begin, so hand them back their state,
            # exactly as a resumed run would.
            self._callback_states = self._current_callback_states()
        self.ended, self.weights_from = False, None
        self._call("on_train_begin")
        self._give_callbacks_their_state()
        self.state()  # a callback state that cannot be saved fails now, not at an epoch's end
        self._check_threads()
        self._started = self._eval_started = self._training_since = time.perf_counter()
        waiting = CoreWait()  # says once when the run waits for the cores
        waiting.start(self.step)
        timed = bool(config.time_limit)
        self._stopwatch = budget.Stopwatch(config.time_limit, self.step) if timed and self.planned_steps is None \
            else None
        if timed:
            self._keep_time()
        metrics = self.history[-1] if self.history else {}
        # A run asked to stop mid-epoch still ends that epoch, resumed or not; epochs of 0
        # are unbounded (a time limit ends the run).
        while (not config.epochs or self.epoch < config.epochs) and not self.time_up and \
                (not self.stop_training or self.step_in_epoch):
            if self.interrupted is not None:
                return metrics
            if self.step_in_epoch == 0:
                self._h = None
                if self.batches.order_size and self._order is None:
                    self._order = self._rng.permutation(self.batches.order_size)
            for x, y in self.batches.epoch(self.step_in_epoch, windows, self._order, self.batches.offset(self.epoch)):
                if self.stop_training or self.time_up:
                    break
                loss = self.train_step(x, y, self._h if self.batches.carries_state else None)
                self.step_in_epoch += 1
                self._since_eval[0] += loss
                self._since_eval[1] += 1
                if report_steps:
                    self._call("on_step_end", step=self.step, loss=loss)
                if self.step >= waiting.due:
                    waiting.check(self.step)
                # (at an epoch's last step, the epoch's own evaluation follows at once)
                if config.eval_every and self.step % config.eval_every == 0 and \
                        self.step_in_epoch < self.steps_per_epoch:
                    metrics = self._timed(self._evaluate_and_report)
                if timed:
                    self._keep_time()
                if self.interrupted is not None:
                    return metrics
            if self.time_up and self.step_in_epoch < self.steps_per_epoch:
                break  # part way through an epoch, which is not over
            self.epoch += 1
            self.step_in_epoch = 0
            self._order = None
            metrics = self._timed(self._end_epoch, metrics)
        if self.time_up and self._since_eval[1]:  # ended part way through an epoch: where it ended
            metrics = self._evaluate_and_report()
        self._call("on_train_end", metrics=metrics)
        self.ended = True
        return self.metrics

    def _end_epoch(self, metrics: dict[str, Any]) -> dict[str, Any]:
        if self._since_eval[1] or not metrics:
            metrics = self._evaluate_and_report()
        self._call("on_epoch_end", epoch=self.epoch, metrics=metrics)
        return metrics

    # -- the time limit ------------------------------------------------------------

    def _timed(self, work: Callable[..., dict[str, Any]], *arguments: Any) -> dict[str, Any]:
        """An evaluation (with what callbacks do at it), timed while the pace is measured."""
        if self._stopwatch is None:
            return work(*arguments)
        watch, started = self._stopwatch, time.perf_counter()
        try:
            return work(*arguments)
        finally:
            watch.evaluation(time.perf_counter() - started)

    def _keep_time(self) -> None:
        """Between two steps of a time-limited run: make the plan once the pace is measured
        (the steps whose training and evaluations fit in what is left of the budget, an
        evaluation timed apart when none came yet), and end the run at the planned step,
        or at once when training ran so much slower than planned that it is past the
        budget by more than budget.overrun_allowed."""
        watch, limit = self._stopwatch, self.config.time_limit
        if watch is not None and watch.enough(self.step):
            estimate = probing = 0.0
            if watch.evaluated < budget.EVALUATIONS_TO_TRUST:  # timed on a sample, twice: a stall hits one
                started = time.perf_counter()
                estimate = min(self.batches.evaluation_seconds(self.model) for _ in range(2))
                probing = time.perf_counter() - started
                self._eval_started += probing  # not training: the next metrics' chars/s leave it out
            pace = watch.pace(self.step, estimate, probing)
            self.planned_steps = budget.plan(self.step, limit - self.wall_time, pace, self.steps_per_epoch,
                                             self.config.eval_every)
            self._stopwatch = None
        planned = self.planned_steps is not None and self.step >= self.planned_steps
        if planned or self.wall_time > limit + budget.overrun_allowed(limit):
            self.time_up = True

    @property
    def end_step(self) -> int | None:
        """The step the run ends at unless a callback stops it: where its epochs end, or
        its time limit's plan once made, whichever comes first; None while neither is known
        (unbounded epochs before the plan)."""
        ends = [end for end in (self.config.epochs * self.steps_per_epoch if self.config.epochs else None,
                                self.planned_steps) if end is not None]
        return min(ends) if ends else None

    def train_step(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None) -> float:
        """One optimisation step on inputs and targets (B, T) from `state`; returns its loss."""
        result = self.model.loss_and_grads(x, y, state, out=self._grads, dropout=self.config.dropout, rng=self._rng)
        try:
            loss, _, self._h = result
            loss = float(loss)
        except (TypeError, ValueError):
            from charseq.models.build import model_label

            raise CharseqError(f"{model_label(self.model.name)}: loss_and_grads returned {type(result).__name__} "
                               f"{str(result)[:60]!r}, not (loss, gradients, state)") from None
        grads = self._grad_flat
        # Checked before the update, so the parameters (and any checkpoint) stay the last good ones.
        if not math.isfinite(loss):
            raise Diverged(f"training diverged at step {self.step + 1} (loss is {loss}){self._diverged_hint()}")
        norm = math.sqrt(float(np.dot(grads, grads)))
        if not math.isfinite(norm):
            raise Diverged(f"training diverged at step {self.step + 1} (the gradient is not finite)"
                           f"{self._diverged_hint()}")
        if self.config.clip:
            np.clip(grads, -self.config.clip, self.config.clip, out=grads)
        if self.config.clip_norm and norm > self.config.clip_norm:
            grads *= self.config.clip_norm / norm
        self.optimizer.step(self.model.flat, grads, self.lr)
        self.step += 1
        return loss

    def _diverged_hint(self) -> str:
        """What to try: a lower rate; with a plugin's model, the plugin may be at fault too."""
        from charseq.models.build import model_label, model_package

        try:
            plugin = model_package(self.model.name) is not None
        except CharseqError:
            plugin = False
        lower = f"; try a lower {setting('lr')}"
        return f"{lower}, or ask after {model_label(self.model.name)}" if plugin else lower

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.config.lr_at(self.step, self.steps_per_epoch, self.end_step)

    def _call(self, hook: str, **arguments: Any) -> None:
        """Call a hook on every callback in order, then make the saves they asked for."""
        self._dispatching = True
        try:
            self.callbacks.call(hook, self, **arguments)
        finally:  # the saves the others asked for are made even when one callback failed
            self._dispatching = False
            pending, self._pending_saves = self._pending_saves, []
            for path, then in pending:
                self._save_now(path, then)

    # -- evaluation --------------------------------------------------------------

    def evaluate(self, ids: np.ndarray) -> float:
        """Mean loss per character over `ids`, read as the training text is."""
        return evaluate(self.model, ids, self.config.batch_size, self.config.seq_len)

    def _evaluate_and_report(self) -> dict[str, Any]:
        # A step's loss and gradient are checked before its update; an update past float's
        # range (a rate of 1e308) is seen by the next step's, or here when there is none.
        if not np.isfinite(self.model.flat).all():
            raise Diverged(f"training diverged by step {self.step} (the weights are no longer finite)"
                           f"{self._diverged_hint()}")
        loss_sum, steps = self._since_eval[0], self._since_eval[1]
        seconds = self._since_eval[2] + time.perf_counter() - self._eval_started
        metrics: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        if steps:
            metrics.update(loss_metrics(loss_sum / steps))
        elif self.history:
            metrics.update(loss_metrics(self.history[-1]["loss"] if self.history[-1]["loss"] is not None else math.nan))
        else:
            metrics.update(loss_metrics(math.nan))
        val_loss = self.batches.validation_loss(self.model)
        if val_loss is not None:
            metrics.update(loss_metrics(val_loss, "val_"))
        metrics["lr"] = self.lr
        metrics["chars_per_sec"] = steps * self.batches.chars_per_step / seconds if seconds else 0.0
        metrics["seconds"] = seconds
        metrics["wall_time"] = self.wall_time
        self.history.append(metrics)
        self._since_eval = [0.0, 0, 0.0]
        self._eval_started = time.perf_counter()
        self._call("on_evaluation", metrics=metrics)
        return metrics

    @property
    def wall_time(self) -> float:
        """Seconds of training so far, across the runs this one resumes."""
        since = self._training_since
        return self._wall_time_before + (time.perf_counter() - since if since is not None else 0.0)

    # -- checkpoints and resuming ---------------------------------------------------

    def save_checkpoint(self, path: str | Path, then: Callable[[Path], None] | None = None) -> None:
        """Save the run to `path`, then call `then(path)`. Asked from inside a hook, the save
        waits until every callback has seen that event, so that a checkpoint always holds the
        state of all of them after it, whatever their order."""
        if self._dispatching:
            self._pending_saves.append((Path(path), then))
        else:
            self._save_now(Path(path), then)

    def _save_now(self, path: Path, then: Callable[[Path], None] | None) -> None:
        if self.saver is not None:
            if self.saver(path) is None:  # skipped: the file there holds the run further along
                return
        else:
            from charseq.checkpoints import format as checkpoint

            checkpoint.save(path, self.to_checkpoint())
        if then is not None:
            then(path)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything `load_state` needs to continue exactly: JSON values, and arrays by name.
        The arrays are the live ones: write them out before training goes on."""
        arrays = {f"optimizer.{name}": value for name, value in self.optimizer.state.items()}
        if self.step_in_epoch and self._h is not None and self.batches.carries_state:
            arrays["trainer.h"] = self._h
        if self.step_in_epoch and self._order is not None:
            arrays["trainer.order"] = self._order
        callbacks = {}
        for key, entry in self.callbacks.stateful().items():
            if key in self.unsaved_state:
                continue
            values = {}
            for name, value in self.callbacks.state_of(entry).items():
                if isinstance(value, np.ndarray):
                    if value.dtype.kind not in "biuf" or not STATE_NAME.match(name):
                        raise CallbackError(entry.label, "state_dict", CharseqError(
                            f"its state array {name!r} ({value.dtype}) cannot be saved: a state holds arrays of "
                            "numbers under names of letters, digits and . _ -"), key)
                    arrays[f"callback.{key}.{name}"] = value
                else:
                    values[name] = value
            try:
                json.dumps(values, default=plain_json)
            except (TypeError, ValueError) as exc:
                raise CallbackError(entry.label, "state_dict", CharseqError(f"its state cannot be saved as JSON ({exc})"),
                                    key) from None
            callbacks[key] = values
        values = {
            "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "rng": self._rng.bit_generator.state,
            "since_eval": [self._since_eval[0], self._since_eval[1],
                           self._since_eval[2] + (time.perf_counter() - self._eval_started if self._started else 0.0)],
            "wall_time": self.wall_time, "history": self.history, "stop_training": self.stop_training,
            "stopped_by": self.stopped_by, "ended": self.ended, "callbacks": callbacks,
            "weights_from": self.weights_from,
            **({"blas_threads": self._blas_threads} if self._blas_threads else {}),
            **({"planned_steps": self.planned_steps} if self.planned_steps is not None else {}),
            **({"time_up": True} if self.time_up else {}),
        }
        return values, arrays

    def load_state(self, values: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Continue from `state()`'s output, saved by a run with these settings. The values'
        types were checked when the checkpoint was read; this checks that they fit the run."""
        if not 0 <= values["step_in_epoch"] <= self.steps_per_epoch:
            raise UsageError("the checkpoint's position in the data does not fit this run's batch size and length")
        if not values["step_in_epoch"] <= values["step"] <= values["epoch"] * self.steps_per_epoch + values["step_in_epoch"]:
            raise UsageError("the checkpoint's step, epoch and position in the epoch disagree")
        expected = set(self.optimizer.state)
        if {name[len("optimizer."):] for name in arrays if name.startswith("optimizer.")} != expected:
            raise UsageError(f"the checkpoint's optimizer state is not {self.config.optimizer}'s")
        for name, value in self.optimizer.state.items():
            value[...] = _same_shape(f"optimizer.{name}", arrays[f"optimizer.{name}"], value)
        h, order = arrays.get("trainer.h"), arrays.get("trainer.order")
        if h is not None:
            _same_shape("trainer.h", h, np.empty(self.model.state_shape(self.config.batch_size), self.model.dtype))
        if order is None and self.batches.order_size and values["step_in_epoch"]:
            why = ("" if self.batches.streams or self.batches.random_windows or self.batches.items else
                   " (before 0.9, charseq read a text as streams for a model that carries nothing; resume it with the "
                   "release that wrote it, or train afresh)")
            raise UsageError(f"the checkpoint stopped part way through an epoch but lacks the order of its windows{why}")
        if order is not None and (order.dtype.kind not in "iu" or order.shape != (self.batches.order_size,) or
                                  not np.array_equal(np.sort(order), np.arange(len(order)))):
            raise UsageError("the checkpoint's order of training windows does not fit this run")
        try:
            self._rng.bit_generator.state = values["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise UsageError(f"the checkpoint's random state is not valid ({exc})") from None
        self.step, self.epoch, self.step_in_epoch = values["step"], values["epoch"], values["step_in_epoch"]
        since = values["since_eval"]
        self._since_eval = [float(since[0]), int(since[1]), float(since[2])]
        self._wall_time_before = float(values["wall_time"])
        if self.batches.random_windows:  # drawn again from the seed: the saved state comes after them
            self._windows = self.corpus.windows(self.config.seq_len, np.random.default_rng(self.config.seed))
        self.history = [dict(entry) for entry in values["history"]]
        self.stop_training, self.stopped_by = values["stop_training"], values["stopped_by"]
        self.ended, self.weights_from = values["ended"], values["weights_from"]
        self._recorded_threads = values.get("blas_threads")
        self.planned_steps, self.time_up = values.get("planned_steps"), values.get("time_up", False)
        if (self.planned_steps is not None or self.time_up) and not self.config.time_limit:
            raise UsageError("the checkpoint's training state has a time limit's plan, but its run has no time limit")
        if self.planned_steps is not None and self.planned_steps < self.step:  # a plan is made ahead of its step
            raise UsageError(f"the checkpoint's time limit planned to end at step {self.planned_steps:,}, before its "
                             f"step {self.step:,}")
        self._h, self._order = h, order
        self._callback_states = {
            key: {**state, **{name[len(f"callback.{key}."):]: value for name, value in arrays.items()
                              if name.startswith(f"callback.{key}.")}}
            for key, state in values["callbacks"].items()
        }

    @property
    def recorded_threads(self) -> int | None:
        """The BLAS threads the run recorded, until fit() goes on with its own."""
        return self._recorded_threads

    def _check_threads(self) -> None:
        """BLAS splits a product's sums by its thread count: a run resumed with another count
        goes on, but does not end bit for bit where the uninterrupted run would."""
        self._blas_threads = blas.threads_in_use()
        recorded, self._recorded_threads = self._recorded_threads, None
        if recorded and self._blas_threads and recorded != self._blas_threads:
            warnings.warn(f"this run trained with {recorded} BLAS thread{'s' if recorded != 1 else ''} and goes on "
                          f"with {self._blas_threads}: it will not end bit for bit where it would have (the last "
                          f"digits differ); {setting('threads', recorded)} resumes it exactly", CharseqWarning,
                          stacklevel=3)

    def _current_callback_states(self) -> dict[str, dict[str, Any]]:
        """A copy of each callback's state, arrays and nested values included: on_train_begin
        may reset the live ones in place."""
        return {key: copy.deepcopy(self.callbacks.state_of(entry)) for key, entry in self.callbacks.stateful().items()}

    def _give_callbacks_their_state(self) -> None:
        """Callbacks reset themselves in on_train_begin; a resumed run then hands back their
        state. A state that does not fit (another model's weights) stops the run here,
        before its first step."""
        states, self._callback_states = self._callback_states, {}
        for key, entry in self.callbacks.stateful().items():
            if key in states:
                self.callbacks.load_state_of(entry, states[key])

    def to_checkpoint(self) -> Checkpoint:
        """The model as it stands, with everything `restore` needs to continue exactly."""
        values, arrays = self.state()
        items = self.corpus.item_starts is not None
        return Checkpoint(model=self.model, vocab=self.corpus.vocab, config=self.config.to_dict(),
                          progress=progress_of(self), corpus=self.corpus.name, run=self.run,
                          training=values, arrays=arrays, item_end=self.corpus.item_end,
                          seen_items=self.corpus.item_hashes() if items else None)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint of this run: the next fit() carries on where it stopped,
        ending bit for bit where the uninterrupted run would have."""
        if checkpoint.training is None:
            raise UsageError("the checkpoint has no training state to resume from (an older format)")
        if checkpoint.item_end != self.corpus.item_end:
            def kind(end: str | None) -> str:
                return "running text" if end is None else "items"

            raise UsageError(f"the checkpoint was trained on {kind(checkpoint.item_end)}, and corpus "
                             f"{self.corpus.name!r} is {kind(self.corpus.item_end)} (or its items end otherwise): "
                             "resume on the corpus it was trained on")
        if checkpoint.vocab != self.corpus.vocab:
            raise UsageError(f"the checkpoint's vocabulary differs from corpus {self.corpus.name!r}'s: "
                             "resume on the corpus it was trained on")
        saved, current = checkpoint.model.params, self.model.params
        if set(saved) != set(current):
            raise UsageError(f"the checkpoint's model has parameters {sorted(saved)}; this run's has {sorted(current)}")
        for name in current:
            _same_shape(name, saved[name], current[name])
        self.load_state(checkpoint.training, checkpoint.arrays)
        for name in current:
            np.copyto(current[name], saved[name])  # into the model's arrays: the optimizer updates those


def memory_needed(config: TrainConfig, model: Model, seq_len: int | None = None) -> int:
    """Bytes a run of these settings needs, roughly: the parameters with their gradients,
    optimizer moments and scratch, and the per-step buffers for training and evaluation
    (the model's own estimate where it has one, else a vanilla RNN's). `seq_len`: the
    longest window, where it is not config.seq_len (the longest item of a corpus of items)."""
    H, V, B, T = model.hidden_size, model.vocab_size, config.batch_size, seq_len or config.seq_len
    moments = {"sgd": 0, "adagrad": 1, "rmsprop": 1, "adam": 2}.get(config.optimizer, 2)
    estimate = getattr(model, "memory_needed", None)
    step = estimate(B, T) if estimate is not None else 4 * (T * B * (5 * H + 2 * V) + 2 * B * H)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        from charseq.models.build import model_label

        raise CharseqError(f"{model_label(model.name)}: memory_needed returned {step!r}, not a number of bytes")
    return model.flat.itemsize * (3 + moments) * model.flat.size + 2 * step + 16 * T * B


def check_window(config: TrainConfig, model: Model, corpus: Corpus) -> None:
    """Refuse, before training, windows longer than a model reads at once (its `max_window`,
    a transformer's context): the run's window, or a corpus of items' longest item."""
    limit = getattr(model, "max_window", None)
    if limit is None:
        return
    if corpus.item_starts is not None:
        check_items_fit(model, corpus, "; give the model a longer context or use shorter items")
        return
    window = config.seq_len
    if window < limit:
        warnings.warn(CharseqWarning(
            f"with {label('seq_len')} {window}, positions {window} to {limit - 1} of the model's context are never "
            f"trained, and text generated past {window} characters reads them; give the model a context of {window}"))
    elif window > limit:
        from charseq.models.build import model_label

        raise UsageError(f"{model_label(model.name)} reads at most {limit} characters at once (its context) and "
                         f"{label('seq_len')} is {window}; give the model a longer context or use a shorter "
                         f"{label('seq_len')}")


def check_memory(config: TrainConfig, model: Model, seq_len: int | None = None) -> None:
    """Refuse, before training allocates its buffers, a run that cannot fit in this machine's memory."""
    needed = memory_needed(config, model, seq_len)
    vocab_size = model.vocab_size
    try:
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return
    if needed > 0.9 * available:
        window = f"T={config.seq_len}" if seq_len is None else f"items of up to {seq_len:,} characters"
        smaller = setting("seq_len") if seq_len is None else "shorter items"
        raise UsageError(f"this run needs about {needed / 2**30:,.1f} GiB of memory (H={config.hidden_size}, "
                         f"B={config.batch_size}, {window}, {vocab_size} symbols), more than this machine's "
                         f"{available / 2**30:,.1f} GiB; use a smaller {setting('hidden_size')}, "
                         f"{setting('batch_size')} or {smaller}")


def progress_of(trainer: Trainer) -> dict[str, Any]:
    """What a checkpoint says of its weights: how far the run got and their loss."""
    metrics = trainer.metrics

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    epoch = metrics.get("epoch", trainer.epoch)
    return {"epoch": trainer.epoch, "step": trainer.step, "loss": number(metrics.get("loss")),
            "val_loss": number(metrics.get("val_loss")),
            "weights_epoch": epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else trainer.epoch}


def _same_shape(name: str, saved: np.ndarray, current: np.ndarray) -> np.ndarray:
    if saved.shape != current.shape or saved.dtype != current.dtype:
        raise UsageError(f"the checkpoint's {name} is {saved.dtype}{list(saved.shape)}; this run needs "
                         f"{current.dtype}{list(current.shape)}")
    return saved
