"""Every training setting, its default, its help text and its checks, stated once.

The CLI's training options are generated from these fields, so a new setting is added
here and nowhere else. A corpus may suggest its own values (``Corpus.defaults``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, cast

from charseq.errors import UsageError

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")  # the update rules charseq.training.optimizers has
SCHEDULES = ("constant", "step", "cosine")
# The model of a text corpus (a corpus may suggest its own): chosen by measurement on
# tiny-shakespeare (see the README): two layers of GRUs beat one (and the vanilla RNN)
# in five minutes of training on two cores.
DEFAULT_MODEL = "gru:layers=2"


def _setting(default: Any, help: str, metavar: str | None = None, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "metavar": metavar, "choices": choices})


@dataclass
class TrainConfig:
    """Every training setting, with defaults for text; a corpus may suggest its own."""

    # Chosen by measurement on tiny-shakespeare with DEFAULT_MODEL (see the README): 5
    # epochs take about five minutes on a 2-core machine.
    hidden_size: int = _setting(256, "Hidden units H (of each layer).")
    seq_len: int = _setting(64, "Characters per training window T.")
    batch_size: int = _setting(64, "Windows (text: parallel streams) per step B.")
    epochs: int = _setting(5, "Passes over the training text.")
    optimizer: str = _setting("adam", "The update rule.", choices=OPTIMIZERS)
    lr: float = _setting(4e-3, "Learning rate.")
    # With Adam every weight moves by about lr a step, but a one-hot input has a fan-in of
    # one, so U's entries are ~sqrt(H) times W's and lr barely moves them; muP gives input
    # weights a rate independent of the width for this reason. On tiny-shakespeare 80 ends
    # 0.09 nats lower than 1 (the README has the runs).
    input_lr_scale: float = _setting(80.0, "Steps of the input weights U, as a multiple of the rest's.")
    # Without it the vanilla RNN overfits by epoch 7 on tiny-shakespeare.
    dropout: float = _setting(0.1, "Drop each unit on its way to the next layer or the output with this "
                                   "probability.")
    clip: float = _setting(0.0, "Clip each gradient element to +-CLIP (0: off).")
    clip_norm: float = _setting(5.0, "Scale the gradient down to this global norm (0: off).")
    warmup: int = _setting(0, "Raise the learning rate linearly over the first STEPS steps.", metavar="STEPS")
    schedule: str = _setting("cosine", "The learning rate after warmup.", choices=SCHEDULES)
    lr_decay: float = _setting(0.5, "step schedule: multiply the rate by this ...")
    lr_decay_every: int = _setting(10, "... every EPOCHS epochs.", metavar="EPOCHS")
    min_lr: float = _setting(0.0, "cosine schedule: the rate it ends at.")
    val_fraction: float = _setting(0.05, "Share of a text held out, from its end, for validation (items: a "
                                         "random set, at most 1,000; a corpus of items suggests 0.1).")
    # Evaluating a million characters takes seconds at H=512; 5 % of a 2 GB text took minutes.
    max_val_chars: int = _setting(1_000_000, "Hold out at most this many characters of a text (of items: "
                                                  "at most 1,000 items, whatever their length).")
    eval_every: int = _setting(0, "Also evaluate every STEPS steps (0: at epoch ends).", metavar="STEPS")
    seed: int = _setting(0, "Seeds initialisation, data order and dropout.")

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _declared(f))
            if f.type == "float":
                setattr(self, f.name, float(getattr(self, f.name)))
        for name in ("hidden_size", "seq_len", "batch_size", "epochs", "lr_decay_every"):
            _at_least(name, getattr(self, name), 1)
        for name in ("warmup", "eval_every", "max_val_chars", "seed"):
            _at_least(name, getattr(self, name), 0)
        for f in fields(self):  # beyond this, a count is a mistake (and would overflow a float)
            if f.type == "int" and getattr(self, f.name) > 2**53:
                raise UsageError(f"{_flag(f.name)} must be at most 2**53, got {getattr(self, f.name)}")
        for name in ("lr", "input_lr_scale"):
            value = getattr(self, name)
            if not value > 0 or not math.isfinite(value):
                raise UsageError(f"{_flag(name)} must be a positive number, got {value}")
        for name in ("clip", "clip_norm", "min_lr"):
            value = getattr(self, name)
            if not value >= 0 or not math.isfinite(value):
                raise UsageError(f"{_flag(name)} must be 0 or more, got {value}")
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
    def for_corpus(cls, corpus: Any, **overrides: Any) -> TrainConfig:
        """Generic defaults, then a corpus's suggestions (a Corpus, or its ``defaults``), then
        explicit overrides (not None)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown training setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
        suggested: Mapping[str, Any] = getattr(corpus, "defaults", corpus)
        settings = {k: v for k, v in suggested.items() if k in known}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """From `to_dict()`'s output (a checkpoint's): every field must be there, nothing else."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, Mapping) or set(data) != names:
            missing, extra = sorted(names - set(data or ())), sorted(set(data or ()) - names)
            raise UsageError(f"training settings do not match this charseq's (missing {missing}, unknown {extra})")
        return cls(**data)

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


def settings() -> list[tuple[str, type, dict[str, Any]]]:
    """(name, type, metadata) of each setting, in order: what the CLI makes options from."""
    types = {"int": int, "float": float, "str": str}
    return [(f.name, types[_declared(f)], dict(f.metadata)) for f in fields(TrainConfig)]


def _declared(f: Field[Any]) -> str:
    """A field's declared type, as written: with postponed annotations it is a string."""
    return cast(str, f.type)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _check_type(name: str, value: Any, declared: str) -> None:
    """Settings come from the CLI, the API and checkpoints: refuse a wrong type in one line."""
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str)}[declared](value)
    if not ok:
        kind = {"int": "a whole number", "float": "a number", "str": "a string"}[declared]
        raise UsageError(f"{_flag(name)} must be {kind}, got {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UsageError(f"{_flag(name)} must be a whole number of at least {minimum}, got {value}")
