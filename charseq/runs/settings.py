"""Every training setting, its default, its help text and its checks, stated once.

The CLI's training options are generated from these fields, so a new setting is added
here and nowhere else. A corpus may suggest its own values (``Corpus.defaults``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, cast

from charseq.errors import UsageError, label

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")  # the update rules charseq.training.optimizers has
SCHEDULES = ("constant", "step", "cosine")
# The model of a text corpus (a corpus may suggest its own): chosen by measurement on
# tiny-shakespeare (see the README): two layers of GRUs beat one (and the vanilla RNN)
# in five minutes of training on two cores.
DEFAULT_MODEL = "gru:layers=2"


# What a duration may be: hours, minutes and seconds in this order, each at most once, or
# plain seconds; a number may have a fraction (1.5h).
# The digits are ASCII: Python's float() also reads other scripts' digits, which no one
# types on purpose.
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = re.compile(rf"(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m)?(?:(?P<s>{_NUMBER})s)?")
DURATIONS = "90s, 5m, 1h30m, 2h or 300 (seconds)"  # the forms, for messages
MAX_DURATION = 366 * 24 * 3600.0  # a year: beyond it, a mistake (and a count of steps past what a checkpoint holds)


def parse_duration(value: Any, name: str = "time_limit") -> float:
    """Seconds of a duration given as text (90s, 5m, 1h30m, 2h, 300) or as a number of
    seconds: the one rule for the CLI, the API and checkpoints; 0 is none."""
    seconds: float | None = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy's numbers too
        try:
            seconds = float(value)
        except OverflowError:  # a whole number past any float: far past the most
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip().lower()
        found = _DURATION.fullmatch(text)
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif text and found:
            seconds = sum(float(found[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
    if seconds is None or not 0 <= seconds <= MAX_DURATION:
        at_most = f" of at most {format_duration(MAX_DURATION)}" if seconds is not None and seconds > 0 else ""
        raise UsageError(f"{label(name)} {value!r} is not a duration{at_most}; give one such as {DURATIONS}")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration as parse_duration reads it: 5m, 1h30m, 12.5s (tenths below a minute, two
    digits below ten seconds: 2.5s, 0.25s)."""
    if seconds < 10:  # in decimals, never 1e-07s: the text must read back
        return format(Decimal(f"{seconds:.2g}"), "f") + "s"
    whole = round(seconds) if seconds >= 60 else round(seconds, 1)
    hours, rest = divmod(whole, 3600)
    minutes, rest = divmod(rest, 60)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else "",
             f"{round(rest, 1):g}s" if rest or not (hours or minutes) else ""]
    return "".join(parts)


def _setting(default: Any, help: str, metavar: str | None = None, choices: tuple[str, ...] | None = None,
             parse: Callable[[Any], Any] | None = None, show: Callable[[Any], str] | None = None) -> Any:
    """A setting: `parse` turns what is given (text, from the CLI) into its value, and
    `show` says a value as it would be given."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "choices": choices, "parse": parse,
                                            "show": show})


@dataclass
class TrainConfig:
    """Every training setting, with defaults for text; a corpus may suggest its own."""

    # Chosen by charseq's own sweep of five-minute runs on tiny-shakespeare with DEFAULT_MODEL
    # (docs/explanation/defaults.md; benchmarks/sweeps/text-5m.txt): 5 epochs took 4m52s on
    # a 2-core AMD EPYC, to 1.481 nats/char.
    hidden_size: int = _setting(320, "Hidden units H (of each layer).")
    seq_len: int = _setting(96, "Characters per training window T.")
    batch_size: int = _setting(32, "Windows per step B (a text's parallel streams, for a recurrent model).")
    epochs: int = _setting(5, "Passes over the training text (0: as many as the time limit allows; with a "
                              "time limit, the default).")
    # A budget of training time, planned as a number of steps once the run has measured its
    # pace (charseq.training.budget), so that the schedule ends with the budget and a resumed
    # run ends where the uninterrupted one would.
    time_limit: float = _setting(0.0, "End the run when this much training time is spent, its learning-rate "
                                      "schedule fitted to it: 90s, 5m, 1h30m, 2h, or seconds (0: none). With "
                                      "epochs, whichever ends first.", metavar="DURATION", parse=parse_duration,
                                 show=lambda seconds: format_duration(seconds) if seconds else "0 (no limit)")
    optimizer: str = _setting("adam", "The update rule.", choices=OPTIMIZERS)
    lr: float = _setting(4e-3, "Learning rate.")
    # With Adam every weight moves by about lr a step, but a one-hot input has a fan-in of
    # one, so U's entries are ~sqrt(H) times W's and lr barely moves them; muP gives input
    # weights a rate independent of the width for this reason. On tiny-shakespeare 80 ended
    # 0.09 nats lower than 1 for the vanilla RNN; the sweep of two GRU layers chose 15.
    input_lr_scale: float = _setting(15.0, "Steps of the input weights U, as a multiple of the rest's.")
    # Without it the vanilla RNN overfits by epoch 7 on tiny-shakespeare.
    dropout: float = _setting(0.12, "Drop each unit on its way to the next layer or the output with this "
                                    "probability.")
    clip: float = _setting(0.0, "Clip each gradient element to +-CLIP (0: off).")
    clip_norm: float = _setting(5.0, "Scale the gradient down to this global norm (0: off).")
    weight_decay: float = _setting(0.0, "Shrink the weight matrices by LR times this every step, apart from the "
                                   "gradient's step (AdamW's decoupled decay; biases and norms are left).")
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
            if f.metadata["parse"] is not None:
                setattr(self, f.name, f.metadata["parse"](getattr(self, f.name)))
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _declared(f))
            if f.type == "float":
                setattr(self, f.name, float(getattr(self, f.name)))
        for name in ("hidden_size", "seq_len", "batch_size", "lr_decay_every"):
            _at_least(name, getattr(self, name), 1)
        if self.epochs != 0 or not self.time_limit:  # 0: unbounded, which only a time limit ends
            _at_least("epochs", self.epochs, 1, f" (0, unbounded, goes with {label('time_limit')})")
        for name in ("warmup", "eval_every", "max_val_chars", "seed"):
            _at_least(name, getattr(self, name), 0)
        for f in fields(self):  # beyond this, a count is a mistake (and would overflow a float)
            if f.type == "int" and getattr(self, f.name) > 2**53:
                raise UsageError(f"{label(f.name)} must be at most 2**53, got {getattr(self, f.name)}")
        for name in ("lr", "input_lr_scale", "clip", "clip_norm", "min_lr", "weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise UsageError(f"{label(name)} must be a finite number, got {value}")
        for name in ("lr", "input_lr_scale"):
            value = getattr(self, name)
            if not value > 0:
                raise UsageError(f"{label(name)} must be a positive number, got {value}")
        for name in ("clip", "clip_norm", "min_lr", "weight_decay"):
            value = getattr(self, name)
            if not value >= 0:
                raise UsageError(f"{label(name)} must be 0 or more, got {value}")
        if self.weight_decay * self.lr >= 1:
            raise UsageError(f"{label('weight_decay')} times {label('lr')} must be below 1 (each step shrinks the "
                             f"weights by that share), got {self.weight_decay:g} x {self.lr:g}; use a smaller "
                             f"{label('lr')} or {label('weight_decay')} (0: no decay)")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"{label('dropout')} must be in [0, 1), got {self.dropout}")
        if not 0 < self.lr_decay <= 1:
            raise UsageError(f"{label('lr_decay')} must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"{label('val_fraction')} must be in [0, 1), got {self.val_fraction}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")

    @classmethod
    def for_corpus(cls, corpus: Any, model_suggests: Mapping[str, Any] | None = None,
                   **overrides: Any) -> TrainConfig:
        """Generic defaults, then a corpus's suggestions (a Corpus, or its ``defaults``: the
        recurrent cells'), then the model's (its ``training_defaults``), then explicit
        overrides (not None). One order, for a run and for a sweep's check of its values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown training setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
        suggested: Mapping[str, Any] = {**getattr(corpus, "defaults", corpus), **(model_suggests or {})}
        settings = {k: v for k, v in suggested.items() if k in known}
        given = {k: v for k, v in overrides.items() if v is not None}
        settings.update(given)
        # A time limit without epochs given: the time decides, as many epochs as fit (a
        # corpus's epochs would end a run of minutes early, or never, by chance).
        if "time_limit" in given and parse_duration(given["time_limit"]) and "epochs" not in given:
            settings["epochs"] = 0
        return cls(**settings)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """From `to_dict()`'s output (a checkpoint's): every field must be there, nothing else
        (a setting added since the run was recorded takes the value its release ran with)."""
        names = {f.name for f in fields(cls)}
        if isinstance(data, Mapping):
            data = {**{k: v for k, v in ADDED_SINCE.items() if k not in data}, **data}
        if not isinstance(data, Mapping) or set(data) != names:
            missing, extra = sorted(names - set(data or ())), sorted(set(data or ()) - names)
            raise UsageError(f"training settings do not match this charseq's (missing {missing}, unknown {extra})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int, steps_per_epoch: int = 1, end: int | None = None) -> float:
        """The learning rate of step `step` (from 0): linear warmup, then the schedule. The
        cosine runs until step `end` (default: the end of the epochs), the run's length;
        while that is not known (unbounded epochs, before a time limit's plan) it holds at
        its start. Warmup and step decay do not depend on the run's length."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.schedule == "step":
            return self.lr * self.lr_decay ** (step // (self.lr_decay_every * steps_per_epoch))
        if end is None and self.epochs:
            end = self.epochs * steps_per_epoch
        if self.schedule == "cosine" and end is not None:
            total = max(1, end - self.warmup)
            progress = min(1.0, (step - self.warmup) / total)
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr


# Settings added since the first checkpoints that record their run (format 3), with the
# value the runs recorded before them trained with.
ADDED_SINCE: dict[str, Any] = {"time_limit": 0.0, "weight_decay": 0.0}


def settings() -> list[tuple[str, type, dict[str, Any]]]:
    """(name, type, metadata) of each setting, in order: what the CLI makes options from
    (text, for a setting that parses what it is given: the core reads it)."""
    types = {"int": int, "float": float, "str": str}
    return [(f.name, str if f.metadata["parse"] else types[_declared(f)], dict(f.metadata))
            for f in fields(TrainConfig)]


def given(name: str, value: Any) -> Any:
    """A setting's value as it is given (text, a number), as the setting holds it."""
    parse = _FIELDS[name].metadata["parse"] if name in _FIELDS else None
    return parse(value) if parse is not None else value


def shown(name: str, value: Any) -> str:
    """A setting's value as it would be given: 5m for a time limit of 300 seconds."""
    show = _FIELDS[name].metadata["show"] if name in _FIELDS else None
    return show(value) if show is not None else str(value)


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _declared(f: Field[Any]) -> str:
    """A field's declared type, as written: with postponed annotations it is a string."""
    return cast(str, f.type)


def _check_type(name: str, value: Any, declared: str) -> None:
    """Settings come from the CLI, the API and checkpoints: refuse a wrong type in one line."""
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str)}[declared](value)
    if not ok:
        kind = {"int": "a whole number", "float": "a number", "str": "a string"}[declared]
        raise UsageError(f"{label(name)} must be {kind}, got {value!r}")


def _at_least(name: str, value: int, minimum: int, note: str = "") -> None:
    if value < minimum:
        raise UsageError(f"{label(name)} must be a whole number of at least {minimum}{note}, got {value}")
