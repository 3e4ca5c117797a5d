"""The command line's words for what the core's messages name: a setting is its flag, a
way to go on is the command to type (charseq.errors.Words says it in the API's words)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from charseq.errors import Placeholder, Words
from charseq.hooks.options import format_options

# A setting's flag is --NAME with - for _, but for these.
FLAGS = {"exact": "--exact-text", "drop_callbacks": "--drop-callback", "callbacks": "--callback", "threads": "--threads"}
# Registered callbacks that a flag of their own stands for, with the option it sets.
SHORTCUTS = {"metrics": ("path", "--metrics"), "early-stopping": ("patience", "--patience")}


class CommandLine(Words):
    def label(self, name: str) -> str:
        return FLAGS.get(name, "--" + name.replace("_", "-"))

    def command(self, name: str) -> str:
        return f"charseq {name}"

    def setting(self, name: str, value: Any = Words.NOTHING) -> str:
        flag = self.label(name)
        if value is Words.NOTHING or value is True:
            return flag
        if name == "callbacks":
            return " ".join(_callback(spec) for spec in value)
        values = value if isinstance(value, (list, tuple)) else [value]
        return " ".join(f"{flag} {_quoted(v)}" for v in values)

    def resuming(self, path: str, *, out: str | None = None, epochs: Any = None, drop_callbacks: Sequence[str] = (),
                 callbacks: Sequence[Any] = ()) -> str:
        parts = ["charseq train --resume", _quoted(path)]
        if out is not None:
            parts += ["--out", _quoted(out)]
        parts += [f"--drop-callback {_quoted(name)}" for name in drop_callbacks]
        parts += [_callback(spec) for spec in callbacks]
        if epochs is not None:
            parts += ["--epochs", _quoted(epochs)]
        return " ".join(parts)


def _callback(spec: Any) -> str:
    """A callback to add, as its shortcut flag where it has one (--metrics PATH), else --callback SPEC."""
    name, options = spec if isinstance(spec, tuple) else (spec, None)
    shortcut = SHORTCUTS.get(name)
    if options is not None and shortcut is not None and set(options) == {shortcut[0]}:
        return f"{shortcut[1]} {_quoted(options[shortcut[0]])}"
    text = spec if options is None else f"{name}:{format_options(options)}" if options else name
    return f"--callback {_quoted(text)}"


def _quoted(value: Any) -> str:
    return str(value) if isinstance(value, Placeholder) else shlex.quote(str(value))


WORDS = CommandLine()
