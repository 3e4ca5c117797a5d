"""The training loop: SGD with element-wise clipping (the seed's update), in batches."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pluggy

from charseq import hookspecs
from charseq.checkpoint import Checkpoint
from charseq.corpus import Corpus
from charseq.errors import CharseqError, UsageError
from charseq.model import VanillaRNN


@dataclass
class TrainConfig:
    """Every training setting, with generic defaults; a corpus may suggest its own."""

    hidden_size: int = 128
    seq_len: int = 32
    batch_size: int = 32
    epochs: int = 10
    lr: float = 0.5
    clip: float = 5.0
    warmup: int = 0  # steps over which the learning rate rises linearly to lr
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_size", "seq_len", "batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not np.isfinite(self.lr):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        if not self.clip > 0:
            raise UsageError(f"clip must be positive, got {self.clip}")
        if int(self.warmup) < 0:
            raise UsageError(f"warmup must be 0 or more steps, got {self.warmup}")

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (from 0): linear warmup, then constant."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        return self.lr

    @classmethod
    def for_corpus(cls, corpus: Corpus, **overrides: Any) -> TrainConfig:
        """Generic defaults, then the corpus's suggestions, then explicit overrides (not None)."""
        known = {f.name for f in fields(cls)}
        settings = {k: v for k, v in corpus.defaults.items() if k in known}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Runs epochs of minibatch SGD over a corpus and calls the run's callbacks."""

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
        windows = corpus.num_windows(config.seq_len)
        if config.batch_size > windows:
            raise UsageError(
                f"batch size {config.batch_size} is larger than the {windows} training windows; "
                "use a smaller --batch-size"
            )
        self.model = model
        self.corpus = corpus
        self.config = config
        self.steps_per_epoch = windows // config.batch_size  # a last partial batch is skipped
        self.epoch = 0  # epochs completed
        self.step = 0  # optimisation steps completed
        self.stop_training = False
        self._grad_flat, self._grads = model.gradient_buffer()
        self.history: list[dict[str, float]] = []
        self.hooks = pluggy.PluginManager("charseq")
        self.hooks.add_hookspecs(hookspecs.CallbackSpec)
        for callback in callbacks:
            try:
                self.hooks.register(callback)
            except (pluggy.PluginValidationError, ValueError) as exc:
                raise CharseqError(f"callback {type(callback).__name__}: {exc}") from None
        try:
            self.hooks.check_pending()
        except pluggy.PluginValidationError as exc:
            raise CharseqError(f"callback {type(exc.plugin).__name__}: {exc}") from None

    def fit(self) -> dict[str, float]:
        """Train for config.epochs (or until a callback stops it); returns the last metrics."""
        # A diverging run is reported as one clear error below, not as numpy warnings.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return self._fit()

    def _fit(self) -> dict[str, float]:
        config = self.config
        rng = np.random.default_rng(config.seed)
        windows = self.corpus.windows(config.seq_len, rng)  # (N, T+1)
        report_steps = bool(self.hooks.hook.on_step_end.get_hookimpls())
        self.stop_training = False
        self.hooks.hook.on_train_begin(trainer=self)
        metrics: dict[str, float] = {}
        while self.epoch < config.epochs and not self.stop_training:
            started = time.perf_counter()
            order = rng.permutation(len(windows))
            total_loss, steps = 0.0, 0
            for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
                batch = windows[order[start : start + config.batch_size]]  # (B, T+1)
                loss = self.train_step(batch[:, :-1], batch[:, 1:])
                total_loss += loss
                steps += 1
                if report_steps:
                    self.hooks.hook.on_step_end(trainer=self, step=self.step, loss=loss)
                    if self.stop_training:  # asked mid-epoch: the epoch still ends normally
                        break
            self.epoch += 1
            metrics = {
                "epoch": self.epoch,
                "loss": total_loss / steps,  # every batch has B*T characters
                "seconds": time.perf_counter() - started,
            }
            self.history.append(metrics)
            self.hooks.hook.on_epoch_end(trainer=self, epoch=self.epoch, metrics=metrics)
        self.hooks.hook.on_train_end(trainer=self, metrics=metrics)
        return metrics

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimisation step on a batch of inputs and targets (B, T); returns its loss."""
        loss, _, _ = self.model.loss_and_grads(x, y, out=self._grads)
        if not math.isfinite(loss):
            raise CharseqError(f"training diverged at step {self.step + 1} (loss is {loss}); try a lower --lr")
        self._sgd_update(self._grad_flat)
        self.step += 1
        return loss

    def to_checkpoint(self) -> Checkpoint:
        """The model as it stands, with the config and progress that produced it."""
        last = self.history[-1] if self.history else {}
        return Checkpoint(
            model=self.model,
            vocab=self.corpus.vocab,
            config=self.config.to_dict(),
            progress={"epoch": self.epoch, "step": self.step, "loss": last.get("loss")},
            corpus=self.corpus.name,
        )

    def _sgd_update(self, grad: np.ndarray) -> None:
        """The seed's update: clip each gradient element to +-clip, then step against it.

        grad is the flat gradient buffer, laid out like model.flat: three calls in all.
        """
        np.clip(grad, -self.config.clip, self.config.clip, out=grad)
        grad *= self.config.lr_at(self.step)
        self.model.flat -= grad
