"""The search space of a sweep: one dimension per ``--param NAME=KIND:ARGS``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from charseq.errors import UsageError, label
from charseq.runs.settings import given
from charseq.runs.settings import settings as train_settings


_SPEC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.-]*)=(?P<kind>log|float|int|choice):(?P<args>.+)$")


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
            raise UsageError(f"{label('param')} {spec!r}: expected NAME=KIND:ARGS, such as lr=log:1e-4:1e-2, dropout=float:0:0.5, "
                             "hidden-size=int:128:512:128 or optimizer=choice:adam,rmsprop")
        name, kind, args = found["name"].replace("-", "_"), found["kind"], found["args"]
        known = {setting: kind for setting, kind, _ in train_settings()}
        if name not in known and name != "model" and not name.startswith("model."):
            raise UsageError(f"{label('param')} {spec!r}: {name!r} is not a training setting; the settings are "
                             f"{', '.join(sorted(known))}, model and model.OPTION")
        if kind == "choice":
            choices = tuple(_value(choice) for choice in args.split(","))
            if any(isinstance(c, float) and not math.isfinite(c) for c in choices):
                raise UsageError(f"{label('param')} {spec!r}: a choice must be a finite number or text")
            if not all(str(c) for c in choices) or len(set(choices)) != len(choices):
                raise UsageError(f"{label('param')} {spec!r}: the choices must be different and not empty")
            if name in known:
                for choice in choices:  # each as the setting reads it (a duration), or of its type
                    if known[name] in (int, float) and isinstance(choice, str):
                        raise UsageError(f"{label('param')} {spec!r}: {choice!r} is not a number")
                    try:
                        given(name, choice)
                    except UsageError as exc:
                        raise UsageError(f"{label('param')} {spec!r}: {exc}") from None
            return cls(name, kind, choices=choices)
        parts = args.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and kind != "int"):
            raise UsageError(f"{label('param')} {spec!r}: {kind} takes LOW:HIGH" + ("[:STEP]" if kind == "int" else ""))
        try:
            numbers = [_number(p, kind) for p in parts]
        except ValueError:
            raise UsageError(f"{label('param')} {spec!r}: {':'.join(parts)} are not {kind} numbers") from None
        low, high = numbers[0], numbers[1]
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise UsageError(f"{label('param')} {spec!r}: LOW must be below HIGH")
        if kind == "log" and low <= 0:
            raise UsageError(f"{label('param')} {spec!r}: a log range must be above 0")
        step = numbers[2] if len(numbers) == 3 else None
        if step is not None and (step < 1 or (high - low) % step):
            raise UsageError(f"{label('param')} {spec!r}: the step must be at least 1 and divide HIGH - LOW")
        return cls(name, kind, low, high, step)

    @property
    def extremes(self) -> tuple[Any, ...]:
        """What a trial may draw at the edges of this dimension: each choice, or both ends
        of the range (whole numbers for an int range): what a sweep checks before it starts."""
        if self.kind == "choice":
            return self.choices
        kind = int if self.kind == "int" else float
        return kind(self.low), kind(self.high)

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")


# Numbers as people type them, in ASCII: Python's int() and float() also read 1_000 and
# other scripts' digits, which no one means as a number here.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def _value(text: str) -> Any:
    """A choice as it is meant: a whole number, a number, or text."""
    text = text.strip()
    return int(text) if _INT.fullmatch(text) else float(text) if _FLOAT.fullmatch(text) else text


def _number(text: str, kind: str) -> float:
    """A range's bound: a whole number for an int range, else a number (ValueError if not)."""
    if not (_INT if kind == "int" else _FLOAT).fullmatch(text.strip()):
        raise ValueError(text)
    return int(text) if kind == "int" else float(text)
