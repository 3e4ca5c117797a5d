"""Checks for JSON read from disk: each field's type and range, wrong ones named in one line.

A schema is a function ``check(value, where)`` that raises Invalid; the helpers below
build them. Nothing read from a file is used before it has passed one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

Check = Callable[[Any, str], None]


class Invalid(ValueError):
    """A value read from a file is not what it must be; the message names where it is."""


def _fail(where: str, what: str, value: Any) -> None:
    shown = repr(value)
    raise Invalid(f"{where} {what}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
            _fail(where, f"must be a whole number in [{low}, {high}]", value)
    return check


def number(low: float | None = None, finite: bool = False) -> Check:
    """A JSON number (whole or not); inf and NaN only when not `finite`."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            _fail(where, "must be a number", value)
        if finite and not math.isfinite(value):
            _fail(where, "must be a finite number", value)
        if low is not None and not value >= low:
            _fail(where, f"must be at least {low}", value)
    return check


def string(max_length: int = 4096, choices: tuple[str, ...] | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or len(value) > max_length:
            _fail(where, f"must be a string of at most {max_length} characters", value)
        if choices is not None and value not in choices:
            _fail(where, f"must be one of {', '.join(choices)}", value)
    return check


def boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        _fail(where, "must be true or false", value)


def optional(schema: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            schema(value, where)
    return check


def list_of(schema: Check, max_length: int = 1_000_000, min_length: int = 0) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list) or not min_length <= len(value) <= max_length:
            _fail(where, f"must be a list of {min_length} to {max_length} items", value)
        for index, item in enumerate(value):
            schema(item, f"{where}[{index}]")
    return check


def map_of(schema: Check, max_length: int = 10_000) -> Check:
    """An object with any string keys, each value passing `schema`."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict) or len(value) > max_length:
            _fail(where, f"must be an object of at most {max_length} entries", value)
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 256:
                _fail(where, "has a key that is not a short string", key)
            schema(item, f"{where}.{key}")
    return check


def record(required: Mapping[str, Check], optional_fields: Mapping[str, Check] | None = None) -> Check:
    """An object with exactly these keys (the optional ones may be missing)."""
    optional_fields = optional_fields or {}

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _fail(where, "must be an object", value)
        missing = [key for key in required if key not in value]
        unknown = [key for key in value if key not in required and key not in optional_fields]
        if missing or unknown:
            raise Invalid(f"{where} " + "; ".join(
                part for part in (f"lacks {', '.join(missing)}" if missing else "",
                                  f"has unknown {', '.join(map(str, unknown[:5]))}" if unknown else "") if part))
        for key, schema in {**required, **optional_fields}.items():
            if key in value:
                schema(value[key], f"{where}.{key}")
    return check


def json_value(max_depth: int = 16, max_items: int = 100_000) -> Check:
    """Any JSON value nested at most `max_depth` deep (a callback's state, say)."""
    def check(value: Any, where: str, depth: int = 0) -> None:
        if depth > max_depth:
            raise Invalid(f"{where} is nested more than {max_depth} deep")
        if value is None or isinstance(value, (bool, int, float, str)):
            return
        if isinstance(value, list) and len(value) <= max_items:
            for index, item in enumerate(value):
                check(item, f"{where}[{index}]", depth + 1)
        elif isinstance(value, dict) and len(value) <= max_items:
            for key, item in value.items():
                check(item, f"{where}.{key}", depth + 1)
        else:
            _fail(where, "must be a JSON value", value)
    return lambda value, where: check(value, where)


def char(value: Any, where: str) -> None:
    if not isinstance(value, str) or len(value) != 1:
        _fail(where, "must be a single character", value)


SCALAR = optional(lambda value, where: None if isinstance(value, (bool, int, float, str)) else
                  _fail(where, "must be a number, a string or true/false", value))
