"""A factory's options: read from its signature (names, defaults, types), converted from the
text of the command line (``key=value,...``), and written back as they are typed."""

from __future__ import annotations

import functools
import inspect
import operator
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from charseq.errors import UsageError


class Hinted(Protocol):
    """What knows the options a bare ``NAME:VALUE`` may have meant (a Registered factory)."""

    def bare_value_hint(self, value: str) -> str: ...


_WHOLE_NUMBER = re.compile(r"^[+-]?[0-9]+$")


def type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's annotations, resolved one by one: one that does not resolve (a name
    imported only for type checkers) must not lose the others, or a `str` option whose
    default is a number would be converted as a number."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    if isinstance(target, functools.partial):
        target = target.func
    elif not inspect.isroutine(target) and callable(target):
        target = type(target).__call__  # a callable object: its __call__ takes the options
    try:
        return typing.get_type_hints(target)
    except Exception:
        pass
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    hints = {}
    for name, annotation in (getattr(target, "__annotations__", None) or {}).items():
        try:
            hints[name] = eval(annotation, dict(namespace)) if isinstance(annotation, str) else annotation
        except Exception:  # this one does not resolve: its default's type decides
            continue
    return hints


@dataclass(frozen=True)
class OptionInfo:
    """One option of a factory, for listings: its name, default and help."""

    REQUIRED: typing.ClassVar[object] = inspect.Parameter.empty  # the default of an option that has none

    name: str
    default: Any
    help: str

    def to_json(self) -> dict[str, Any]:
        required = self.default is OptionInfo.REQUIRED
        default = None if required else self.default
        if not (default is None or isinstance(default, (bool, int, float, str))):
            default = str(default)
        return {"name": self.name, "default": default, "required": required, "help": self.help}


@dataclass(frozen=True)
class Option:
    """An option's declaration, in its factory's annotation, as llm's Options declare theirs:
    ``k: Annotated[int, Option("how many to keep", min=1)] = 40``. Its help is what the
    listings show (over a docstring line), and its bounds and choices are checked, with the
    type's conversion, before the factory is called: one place for all of it."""

    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any, where: str) -> None:
        """Refuse, in one line, a value outside the bounds or the choices."""
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{where} must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and not value >= self.min:
                raise UsageError(f"{where} must be at least {self.min:g}, got {value!r}")
            if self.max is not None and not value <= self.max:
                raise UsageError(f"{where} must be at most {self.max:g}, got {value!r}")


def declared_options(factory: Callable[..., Any]) -> dict[str, Option]:
    """The options whose annotation carries an Option: ``Annotated[T, Option(...)]``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    if isinstance(target, functools.partial):
        target = target.func
    elif not inspect.isroutine(target) and callable(target):
        target = type(target).__call__
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:
        return {}
    declared = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            found = [extra for extra in hint.__metadata__ if isinstance(extra, Option)]
            if found:
                declared[name] = found[0]
    return declared


_OPTION_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?\s*:\s+(\S.*)$")


def documented_options(factory: Callable[..., Any], names: list[str]) -> dict[str, str]:
    """Help for options from the factory's docstring: a line that starts with an option's
    name and a colon (``k: how many to keep``, or ``k (int): ...``) is that option's help."""
    docs = [inspect.getdoc(factory) or ""]
    if inspect.isclass(factory) and "__init__" in vars(factory):
        docs.append(inspect.getdoc(factory.__init__) or "")
    found: dict[str, str] = {}
    for line in "\n".join(docs).splitlines():
        match = _OPTION_LINE.match(line)
        if match and match.group(1) in names and match.group(1) not in found:
            found[match.group(1)] = match.group(2).strip()
    return found


def convert_value(value: Any, declared: Any, where: str) -> Any:
    """`value` as type `declared` (int, float, bool, str, Path, an Optional or a union of
    these); text from the command line is converted, other values are checked."""
    if typing.get_origin(declared) is typing.Annotated:  # Annotated[T, Option(...)]: T converts
        declared = typing.get_args(declared)[0]
    if declared is None or declared is Any:
        return value
    origin = typing.get_origin(declared)
    if origin is typing.Union or origin is types.UnionType:
        choices = [t for t in typing.get_args(declared) if t is not type(None)]
        if type(None) in typing.get_args(declared) and (value is None or (isinstance(value, str) and
                                                                           value.lower() in ("none", "null"))):
            return None
        errors = []
        for choice in choices:
            try:
                return convert_value(value, choice, where)
            except UsageError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return value
    if declared is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        raise UsageError(f"{where} must be true or false, got {value!r}")
    if declared is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _WHOLE_NUMBER.match(value.strip()):  # not 1_0, nor other scripts' digits
            try:
                return int(value)
            except ValueError:  # past Python's limit on an integer's digits (4,300)
                raise UsageError(f"{where} has {len(value.strip()):,} digits, more than any setting takes") from None
        if not isinstance(value, (bool, str)) and type(value).__name__ != "bool_":
            try:
                return operator.index(value)  # a numpy integer
            except TypeError:
                pass
        raise UsageError(f"{where} must be a whole number, got {value!r}")
    if declared is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and "_" not in value and value.isascii():  # Python reads 2024_01 as 202401.0
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{where} must be a number, got {value!r}")
    if declared is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, str):
            return value
        raise UsageError(f"{where} must be text, got {value!r}")
    if declared in (Path, os.PathLike):
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise UsageError(f"{where} must be a path, got {value!r}")
    return value


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_options(arg: str | None, registered: Hinted | None = None) -> dict[str, str]:
    """``key=value,key=value`` -> options as text; the factory's declared types convert them.

    A value holds a comma, or spaces at its ends, in quotes, double or single, which are
    not part of it: ``path="a,b.jsonl"``, ``path=runs/'a, b'.jsonl``. Spaces around a key
    and an unquoted value are dropped. A key given twice, or without a value, is an error.
    `registered`, the factory the options are for, lets a bare value (``top-k:20``) be
    answered with what was meant (``top-k:k=20``)."""
    options: dict[str, str] = {}
    if not arg:
        return options
    for raw, chars in _option_items(arg):
        if not raw.strip():
            raise UsageError(f"malformed options {arg!r}: an empty option (a stray comma?)")
        equals = next((i for i, (char, quoted) in enumerate(chars) if char == "=" and not quoted), None)
        key = "" if equals is None else "".join(char for char, _ in chars[:equals]).strip().replace("-", "_")
        if equals is None or any(quoted for _, quoted in chars[:equals]) or not key.isidentifier():
            hint = registered.bare_value_hint(raw) if registered is not None and equals is None else ""
            raise UsageError(f"malformed option {raw!r}: expected key=value{hint}")
        value = chars[equals + 1:]
        while value and not value[0][1] and value[0][0].isspace():
            value = value[1:]
        while value and not value[-1][1] and value[-1][0].isspace():
            value = value[:-1]
        if key in options:
            raise UsageError(f"option {key!r} is given twice")
        text = "".join(char for char, _ in value)
        if not text:
            raise UsageError(f"option {key!r} has no value")
        options[key] = text
    return options


def _option_items(arg: str) -> list[tuple[str, list[tuple[str, bool]]]]:
    """`arg` cut at its unquoted commas: each item as typed (for messages) and its
    characters, each marked whether it was quoted, the quotes themselves left out."""
    items: list[tuple[str, list[tuple[str, bool]]]] = []
    chars: list[tuple[str, bool]] = []
    quote, start = None, 0
    for index, char in enumerate(arg):
        if quote is not None:
            if char == quote:
                quote = None
            else:
                chars.append((char, True))
        elif char in "\"'":
            quote = char
        elif char == ",":
            items.append((arg[start:index].strip(), chars))
            chars, start = [], index + 1
        else:
            chars.append((char, False))
    if quote is not None:
        raise UsageError(f"the quote {quote} in options {arg!r} is not closed; a quoted value ends with the same quote")
    items.append((arg[start:].strip(), chars))
    return items


def format_options(options: dict[str, Any]) -> str:
    """Options as they are typed, ``key=value,...``, a value quoted where parse_options
    would read differently (a comma, a quote, spaces at its ends)."""
    return ",".join(f"{key}={shown_value(value)}" for key, value in options.items())


def shown_value(value: Any) -> str:
    """One option's value as it is typed: none, true, 0.5, or "a,b" in quotes."""
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if not text or "," in text or '"' in text or "'" in text or text != text.strip():
        quote = "'" if '"' in text else '"'
        return f"{quote}{text}{quote}"
    return text
