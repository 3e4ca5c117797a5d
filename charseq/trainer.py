"""The training loop: batches, an optimizer, clipping, a learning-rate schedule, validation."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pluggy

from charseq import hookspecs
from charseq.checkpoint import Checkpoint
from charseq.corpus import Corpus
from charseq.errors import CharseqError, UsageError
from charseq.model import PARAM_NAMES, VanillaRNN
from charseq.optimizers import OPTIMIZERS, make_optimizer

SCHEDULES = ("constant", "step", "cosine")
LN2 = math.log(2)


@dataclass
class TrainConfig:
    """Every training setting, with defaults for text; a corpus may suggest its own."""

    # Chosen by measurement on tiny-shakespeare (see the README): 20 epochs take about four
    # to five minutes on a 2-core machine and end at 1.53 nats/char on the held-out text.
    hidden_size: int = 512
    seq_len: int = 128
    batch_size: int = 32
    epochs: int = 20
    optimizer: str = "adam"
    lr: float = 2e-3
    # U's steps are this many times the rest's. With Adam every weight moves by about lr a
    # step, but a one-hot input has a fan-in of one, so U's entries are ~sqrt(H) times W's
    # and lr barely moves them; muP gives input weights a rate independent of the width for
    # this reason. On tiny-shakespeare 80 ends 0.09 nats lower than 1 (the README has the runs).
    input_lr_scale: float = 80.0
    # Dropout on the states' way to the output: without it the model overfits by epoch 7.
    dropout: float = 0.2
    clip: float = 0.0  # clip each gradient element to +-clip; 0: off
    clip_norm: float = 5.0  # scale the gradient to this global norm when above it; 0: off
    warmup: int = 0  # steps over which the learning rate rises linearly to lr
    schedule: str = "cosine"  # after warmup: constant, step (decay) or cosine
    lr_decay: float = 0.5  # step schedule: multiply the rate by this ...
    lr_decay_every: int = 10  # ... every this many epochs
    min_lr: float = 0.0  # cosine schedule: the rate it ends at
    val_fraction: float = 0.05  # held out from the end of a text corpus ...
    max_val_chars: int = 1_000_000  # ... up to this many characters: evaluating them takes seconds
    eval_every: int = 0  # also evaluate every this many steps; 0: at epoch ends only
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_size", "seq_len", "batch_size", "epochs", "lr_decay_every"):
            _at_least(name, getattr(self, name), 1)
        for name in ("warmup", "eval_every", "max_val_chars"):
            _at_least(name, getattr(self, name), 0)
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        if not self.input_lr_scale > 0 or not math.isfinite(self.input_lr_scale):
            raise UsageError(f"input-lr-scale must be a positive number, got {self.input_lr_scale}")
        for name in ("clip", "clip_norm", "min_lr"):
            value = getattr(self, name)
            if not value >= 0 or not math.isfinite(value):
                raise UsageError(f"{name.replace('_', '-')} must be 0 or more, got {value}")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.lr_decay <= 1:
            raise UsageError(f"lr-decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")

    @classmethod
    def for_corpus(cls, corpus: Corpus, **overrides: Any) -> TrainConfig:
        """Generic defaults, then the corpus's suggestions, then explicit overrides (not None)."""
        known = {f.name for f in fields(cls)}
        settings = {k: v for k, v in corpus.defaults.items() if k in known}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int, steps_per_epoch: int = 1) -> float:
        """The learning rate of step `step` (from 0): linear warmup, then the schedule."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.schedule == "step":
            return self.lr * self.lr_decay ** (step // (self.lr_decay_every * steps_per_epoch))
        if self.schedule == "cosine":
            total = max(1, self.epochs * steps_per_epoch - self.warmup)
            progress = min(1.0, (step - self.warmup) / total)
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr


def _at_least(name: str, value: int, minimum: int) -> None:
    if int(value) != value or value < minimum:
        raise UsageError(f"{name.replace('_', '-')} must be a whole number of at least {minimum}, got {value}")


def loss_metrics(loss: float, prefix: str = "") -> dict[str, float]:
    """A loss in nats per character, in bits per character, and as perplexity."""
    return {f"{prefix}loss": loss, f"{prefix}bpc": loss / LN2,
            f"{prefix}perplexity": math.exp(loss) if loss < 700 else math.inf}


class Trainer:
    """Runs epochs of minibatch training over a corpus and calls the run's callbacks.

    A corpus with random windows (the seed's task) is trained on shuffled windows, each
    from a zero state. Text is trained as char-rnn does: cut into B parallel streams read
    T characters at a time, the hidden state carried from one window to the next
    (truncated backpropagation through time) and reset at each epoch; the last
    val_fraction of it (at most max_val_chars) is held out for validation.
    """

    def __init__(
        self,
        model: VanillaRNN,
        corpus: Corpus,
        config: TrainConfig,
        callbacks: Iterable[object] = (),
    ):
        if model.vocab_size != len(corpus.vocab):
            raise UsageError(
                f"model has {model.vocab_size} symbols but corpus {corpus.name!r} has {len(corpus.vocab)}"
            )
        self.model = model
        self.corpus = corpus
        self.config = config
        T, B = config.seq_len, config.batch_size
        if corpus.random_windows:
            self.train_ids, self.val_ids = corpus.ids, None
            windows = corpus.random_windows
            if B > windows:
                raise UsageError(f"batch size {B} is larger than the {windows} training windows; "
                                 "use a smaller --batch-size")
            self.steps_per_epoch = windows // B  # a last partial batch is skipped
        else:
            held_out = min(int(len(corpus.ids) * config.val_fraction), config.max_val_chars)
            if held_out and held_out < 2:
                held_out = 0
            self.train_ids = corpus.ids[: len(corpus.ids) - held_out]
            self.val_ids = corpus.ids[len(corpus.ids) - held_out :] if held_out else None
            stream_length = (len(self.train_ids) - 1) // B
            if stream_length < T:
                raise UsageError(
                    f"the training text of {corpus.name!r} ({len(self.train_ids):,} characters) is too short "
                    f"for {B} streams of at least {T + 1} characters; use a smaller --batch-size or --seq-len"
                )
            self.steps_per_epoch = stream_length // T
        self.optimizer = make_optimizer(config.optimizer, model.flat.size, model.dtype,
                                        [(model.flat_slices()["U"], config.input_lr_scale)])
        self.epoch = 0  # epochs completed
        self.step = 0  # optimisation steps completed
        self.step_in_epoch = 0  # steps of the current epoch completed
        self.stop_training = False  # set by a callback: stop after this step's epoch ends
        self.interrupted: int | None = None  # set (to a signal number) to stop at the next step boundary
        self.history: list[dict[str, float]] = []  # one entry per evaluation
        self._rng = np.random.default_rng(config.seed)  # data order and dropout masks
        self._order: np.ndarray | None = None  # this epoch's order of random windows
        self._h: np.ndarray | None = None  # the state carried into the next window
        self._since_eval: list[float] = [0.0, 0]  # loss sum and steps since the last evaluation
        self._wall_time_before = 0.0  # training time of the runs this one resumes
        self._started: float | None = None  # when fit() began
        self._callback_states: dict[str, Any] = {}  # restored into the callbacks once training begins
        self._grad_flat, self._grads = model.gradient_buffer()
        self.callbacks = list(callbacks)
        self.hooks = pluggy.PluginManager("charseq")
        self.hooks.add_hookspecs(hookspecs.CallbackSpec)
        for callback in self.callbacks:
            try:
                self.hooks.register(callback)
            except (pluggy.PluginValidationError, ValueError) as exc:
                raise CharseqError(f"callback {type(callback).__name__}: {exc}") from None
        try:
            self.hooks.check_pending()
        except pluggy.PluginValidationError as exc:
            raise CharseqError(f"callback {type(exc.plugin).__name__}: {exc}") from None

    # -- the loop ----------------------------------------------------------------

    def fit(self) -> dict[str, float]:
        """Train until config.epochs are done, a callback stops it, or it is interrupted;
        returns the last metrics. An interrupted run stops between two steps, without
        ending its epoch or calling on_train_end, so that it can be saved and resumed."""
        # A diverging run is reported as one clear error, not as numpy warnings.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return self._fit()

    def _fit(self) -> dict[str, float]:
        config = self.config
        windows = None
        if self.corpus.random_windows:
            # The first draws of the seed's generator; a resumed run draws them again.
            fresh = self.step == 0 and self.step_in_epoch == 0
            windows = self.corpus.windows(config.seq_len, self._rng if fresh else np.random.default_rng(config.seed))
        report_steps = bool(self.hooks.hook.on_step_end.get_hookimpls())
        self.stop_training = False
        self.hooks.hook.on_train_begin(trainer=self)
        self._restore_callbacks()
        self._started = time.perf_counter()
        self._eval_started = time.perf_counter()
        metrics: dict[str, float] = self.history[-1] if self.history else {}
        while self.epoch < config.epochs and not self.stop_training:
            if self.interrupted is not None:
                return metrics
            for x, y, carry in self._epoch_batches(windows):
                loss = self.train_step(x, y, self._h if carry else None)
                self.step_in_epoch += 1
                self._since_eval[0] += loss
                self._since_eval[1] += 1
                if report_steps:
                    self.hooks.hook.on_step_end(trainer=self, step=self.step, loss=loss)
                if config.eval_every and self.step % config.eval_every == 0:
                    metrics = self._evaluate_and_report()
                if self.interrupted is not None:
                    return metrics
                if self.stop_training:  # asked mid-epoch: the epoch still ends normally
                    break
            self.epoch += 1
            self.step_in_epoch = 0
            self._order = None
            if self._since_eval[1] or not metrics:
                metrics = self._evaluate_and_report()
            self.hooks.hook.on_epoch_end(trainer=self, epoch=self.epoch, metrics=metrics)
        self.hooks.hook.on_train_end(trainer=self, metrics=metrics)
        return metrics

    def _epoch_batches(self, windows: np.ndarray | None) -> Iterator[tuple]:
        """(x, y, carry the hidden state over) for each remaining step of the current epoch."""
        B, T = self.config.batch_size, self.config.seq_len
        first = self.step_in_epoch  # past 0 when resuming mid-epoch
        if first == 0:
            self._h = None
        if windows is not None:
            if self._order is None:
                self._order = self._rng.permutation(len(windows))
            for start in range(first * B, self.steps_per_epoch * B, B):
                batch = windows[self._order[start : start + B]]  # (B, T+1)
                yield batch[:, :-1], batch[:, 1:], False
            return
        length = self.steps_per_epoch * T
        stream_length = (len(self.train_ids) - 1) // B
        inputs = self.train_ids[: B * stream_length].reshape(B, stream_length)[:, :length]  # (B, L) views
        targets = self.train_ids[1 : B * stream_length + 1].reshape(B, stream_length)[:, :length]
        for start in range(first * T, length, T):
            yield inputs[:, start : start + T], targets[:, start : start + T], True

    def train_step(self, x: np.ndarray, y: np.ndarray, h0: np.ndarray | None = None) -> float:
        """One optimisation step on inputs and targets (B, T) from state h0; returns its loss."""
        loss, _, self._h = self.model.loss_and_grads(x, y, h0, out=self._grads, dropout=self.config.dropout,
                                                     rng=self._rng)
        grads = self._grad_flat
        # Checked before the update, so the parameters (and any checkpoint) stay the last good ones.
        if not math.isfinite(loss):
            raise Diverged(f"training diverged at step {self.step + 1} (loss is {loss}); try a lower --lr")
        norm = math.sqrt(float(np.dot(grads, grads)))
        if not math.isfinite(norm):
            raise Diverged(f"training diverged at step {self.step + 1} (the gradient is not finite); "
                           "try a lower --lr")
        if self.config.clip:
            np.clip(grads, -self.config.clip, self.config.clip, out=grads)
        if self.config.clip_norm and norm > self.config.clip_norm:
            grads *= self.config.clip_norm / norm
        self.optimizer.step(self.model.flat, grads, self.lr)
        self.step += 1
        return loss

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.config.lr_at(self.step, self.steps_per_epoch)

    # -- evaluation --------------------------------------------------------------

    def evaluate(self, ids: np.ndarray) -> float:
        """Mean loss per character over `ids`, read as the training text is: parallel
        streams, windows of seq_len, the state carried."""
        return evaluate(self.model, ids, self.config.batch_size, self.config.seq_len)

    def _evaluate_and_report(self) -> dict[str, float]:
        loss_sum, steps = self._since_eval
        seconds = time.perf_counter() - self._eval_started
        metrics: dict[str, float] = {"epoch": self.epoch, "step": self.step}
        if steps:
            metrics.update(loss_metrics(loss_sum / steps))
        elif self.history:
            metrics.update({k: self.history[-1][k] for k in ("loss", "bpc", "perplexity")})
        if self.val_ids is not None:
            metrics.update(loss_metrics(self.evaluate(self.val_ids), "val_"))
        metrics["lr"] = self.lr
        metrics["chars_per_sec"] = steps * self.config.batch_size * self.config.seq_len / seconds if seconds else 0.0
        metrics["seconds"] = seconds
        metrics["wall_time"] = self.wall_time
        self.history.append(metrics)
        self._since_eval = [0.0, 0]
        self._eval_started = time.perf_counter()
        self.hooks.hook.on_evaluation(trainer=self, metrics=metrics)
        return metrics

    @property
    def wall_time(self) -> float:
        """Seconds of training so far, across the runs this one resumes."""
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._wall_time_before + running

    # -- checkpoints and resuming ---------------------------------------------------

    def to_checkpoint(self) -> Checkpoint:
        """The model as it stands, with the config, progress and everything `restore` needs
        to continue exactly: optimizer state, random state, position in the data, callbacks.
        Like the model, its arrays are the live ones: save it before training goes on."""
        last = self.history[-1] if self.history else {}
        arrays = {f"optimizer.{name}": value for name, value in self.optimizer.state.items()}
        if self.step_in_epoch and self._h is not None and not self.corpus.random_windows:
            arrays["trainer.h"] = self._h
        if self.step_in_epoch and self._order is not None:
            arrays["trainer.order"] = self._order
        callbacks = {}
        for key, callback in self._stateful_callbacks().items():
            values, callback_arrays = _split_arrays(callback.state_dict(), f"callback.{key}.")
            callbacks[key] = values
            arrays.update(callback_arrays)
        training = {
            "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "corpus_characters": len(self.corpus.ids), "rng": self._rng.bit_generator.state,
            "since_eval": list(self._since_eval), "wall_time": self.wall_time, "history": self.history,
            "callbacks": callbacks,
        }
        return Checkpoint(
            model=self.model,
            vocab=self.corpus.vocab,
            config=self.config.to_dict(),
            progress={"epoch": self.epoch, "step": self.step, "loss": last.get("loss"),
                      "val_loss": last.get("val_loss")},
            corpus=self.corpus.name,
            corpus_spec=self.corpus.spec,
            corpus_options=dict(self.corpus.spec_options),
            training=training,
            arrays=arrays,
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint of this run: the next fit() carries on where it stopped,
        ending bit for bit where the uninterrupted run would have."""
        training = checkpoint.training
        if training is None:
            raise UsageError("the checkpoint has no training state to resume from (an older format); "
                             "train a new model instead")
        if checkpoint.vocab != self.corpus.vocab:
            raise UsageError(f"the checkpoint's vocabulary differs from corpus {self.corpus.name!r}'s: "
                             "resume on the corpus it was trained on")
        if training.get("corpus_characters") != len(self.corpus.ids):
            raise UsageError(f"corpus {self.corpus.name!r} has {len(self.corpus.ids):,} characters, the checkpoint "
                             f"was trained on {training.get('corpus_characters')}: resume on the same text")
        try:
            for name in PARAM_NAMES:
                self.model.params[name] = checkpoint.model.params[name]
            for name, value in self.optimizer.state.items():
                value[...] = _same_shape(checkpoint.arrays[f"optimizer.{name}"], value)
            self._rng.bit_generator.state = training["rng"]
            self.step, self.epoch = int(training["step"]), int(training["epoch"])
            self.step_in_epoch = int(training["step_in_epoch"])
            self._since_eval = [float(training["since_eval"][0]), int(training["since_eval"][1])]
            self._wall_time_before = float(training["wall_time"])
            self.history = list(training["history"])
            self._h = checkpoint.arrays.get("trainer.h")
            self._order = checkpoint.arrays.get("trainer.order")
            self._callback_states = {
                key: {**values, **_arrays_of(checkpoint.arrays, f"callback.{key}.")}
                for key, values in dict(training["callbacks"]).items()
            }
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UsageError(f"the checkpoint's training state does not fit this run ({exc!r}); "
                             "was it trained with other settings?") from None
        if not 0 <= self.step_in_epoch <= self.steps_per_epoch:
            raise UsageError("the checkpoint's position in the data does not fit this run's batch size and length")

    def _stateful_callbacks(self) -> dict[str, Any]:
        """Callbacks with state_dict/load_state_dict, by a key stable from run to run:
        the class name, numbered from the second of a kind."""
        keyed: dict[str, Any] = {}
        for callback in self.callbacks:
            if not (hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict")):
                continue
            base = type(callback).__name__
            key, n = base, 1
            while key in keyed:
                n += 1
                key = f"{base}-{n}"
            keyed[key] = callback
        return keyed

    def _restore_callbacks(self) -> None:
        """Callbacks reset themselves in on_train_begin; a resumed run then gives them their state."""
        states, self._callback_states = self._callback_states, {}
        for key, callback in self._stateful_callbacks().items():
            if key in states:
                callback.load_state_dict(states[key])


class Diverged(CharseqError):
    """The loss or the gradient stopped being a finite number."""


def _split_arrays(state: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A callback's state as JSON values and arrays; arrays are named prefix + key."""
    values, arrays = {}, {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[prefix + key] = value
        else:
            values[key] = value
    return values, arrays


def _arrays_of(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


def _same_shape(saved: np.ndarray, current: np.ndarray) -> np.ndarray:
    if saved.shape != current.shape or saved.dtype != current.dtype:
        raise ValueError(f"saved {saved.dtype}{list(saved.shape)}, expected {current.dtype}{list(current.shape)}")
    return saved


EVAL_STREAM_CHARS = 4096


def evaluate(model: VanillaRNN, ids: np.ndarray, batch_size: int, seq_len: int) -> float:
    """Mean loss per character of `model` predicting `ids`, read as parallel streams of
    windows with the state carried.

    Each stream starts from a zero state and predicts its first characters badly, so
    streams are kept at least EVAL_STREAM_CHARS long (up to batch_size of them): the
    cold starts then weigh about 0.5 %, where 64 streams over a 55k-character text
    would add some 0.03 nats. Short texts get fewer, shorter streams.
    """
    if len(ids) < 2:
        raise UsageError("evaluation needs at least two characters")
    streams = max(1, min(batch_size, (len(ids) - 1) // max(seq_len, EVAL_STREAM_CHARS)))
    stream_length = (len(ids) - 1) // streams
    T = min(seq_len, stream_length)
    inputs = ids[: streams * stream_length].reshape(streams, stream_length)
    targets = ids[1 : streams * stream_length + 1].reshape(streams, stream_length)
    total, count, h = 0.0, 0, None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for start in range(0, stream_length - T + 1, T):
            loss, h = model.loss(inputs[:, start : start + T], targets[:, start : start + T], h)
            total += loss * streams * T
            count += streams * T
    return total / count
