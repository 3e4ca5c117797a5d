"""The exceptions and warnings users see, and the words they are said in.

A message names settings and the ways to go on in the words of whoever is asking: the
Python API's (``out``, ``force=True``, ``Run.resume('a.npz')``) by default, a front end's
own while it runs (``spoken``: the CLI says ``--out``, ``--force``, ``charseq train
--resume a.npz``). The core phrases its messages with ``setting`` and ``resuming``, never
with one front end's words; the CLI turns each error into one line.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, for messages: 1 epoch, 2 epochs, 1,000 characters (never "1 epochs")."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


class CharseqError(Exception):
    """A failure the user can act on; the CLI exits with code 1."""

    exit_code = 1


class UsageError(CharseqError):
    """Bad input from the user (an option, a path, a name, a damaged file); the CLI exits with code 2."""

    exit_code = 2


class SaveError(CharseqError):
    """A file could not be written (disk full, file-size limit, permissions); what was at
    the path before is still there, whole."""

    def __init__(self, path: object, reason: str, os_error: OSError | None = None):
        super().__init__(f"cannot write {str(path)!r}: {reason}")
        self.path, self.reason, self.os_error = path, reason, os_error


class CharseqWarning(UserWarning):
    """Something went wrong that charseq worked around (a metrics line it could not write);
    the CLI prints it as one line."""


class CallbackDeprecation(CharseqWarning, DeprecationWarning):
    """A callback uses what is not promised to it (docs/plugins.md): it works for now. The
    command line shows it (a DeprecationWarning alone would be hidden)."""


class Notice(CharseqWarning):
    """Something charseq did as asked that is worth knowing (it left out a prime's unknown
    characters); the CLI prints it as one line, without "warning"."""


class PluginWarning(CharseqWarning):
    """A plugin misbehaved (failed to import, raised in a hook, took a taken name) and
    was skipped; everything else keeps working. CHARSEQ_STRICT_PLUGINS=1 makes these
    errors instead, for plugin authors."""


# -- the words a message is said in -----------------------------------------------------------


class Placeholder(str):
    """What the user fills in (N, PATH): shown as it is, in any words."""

    def __repr__(self) -> str:
        return str(self)


class Words:
    """The Python API's words: a setting is its keyword argument, a way to go on a call."""

    NOTHING: Any = object()  # no value: the setting is named, not given

    def label(self, name: str) -> str:
        """A setting as the name of what it holds: "out 'a.npz' holds ...", "does not take exact"."""
        return name

    def command(self, name: str) -> str:
        """What does a job (a sweep, a server): "not made by charseq's sweep"."""
        return f"charseq's {name}"

    def setting(self, name: str, value: Any = NOTHING) -> str:
        """A setting to give: `name=…`, or with `value` (force=True, epochs=N)."""
        if name == "threads":  # no keyword: the threads are the process's, set around the call
            return "charseq.blas.limited(…)" if value is self.NOTHING else f"charseq.blas.limited({value!r})"
        return f"{name}=…" if value is self.NOTHING else f"{name}={value!r}"

    def resuming(self, path: str, *, out: str | None = None, epochs: Any = None, drop_callbacks: Sequence[str] = (),
                 callbacks: Sequence[Any] = ()) -> str:
        """How to go on with the run saved at `path`, changed as given (callbacks to add as
        ``NAME:key=value`` specs or ``(NAME, options)``)."""
        changes = {"out": out, "epochs": epochs, "drop_callbacks": list(drop_callbacks) or None,
                   "callbacks": list(callbacks) or None}
        given = "".join(f", {name}={value!r}" for name, value in changes.items() if value is not None)
        return f"Run.resume({path!r}{given})"


_WORDS: contextvars.ContextVar[Words] = contextvars.ContextVar("words", default=Words())


@contextlib.contextmanager
def spoken(words: Words) -> Iterator[None]:
    """Messages made inside name settings and ways to go on in `words` (a front end's)."""
    token = _WORDS.set(words)
    try:
        yield
    finally:
        _WORDS.reset(token)


def setting(name: str, value: Any = Words.NOTHING) -> str:
    """A setting in the words of whoever asks: out or --out; force=True or --force."""
    return _WORDS.get().setting(name, value)


def command(name: str) -> str:
    """What does a job, in the words of whoever asks: charseq's sweep, or charseq sweep."""
    return _WORDS.get().command(name)


def label(name: str) -> str:
    """A setting as the name of what it holds, in the words of whoever asks: out or --out."""
    return _WORDS.get().label(name)


def resuming(path: str, **changes: Any) -> str:
    """How to go on with a saved run, in the words of whoever asks (see Words.resuming)."""
    return _WORDS.get().resuming(path, **changes)
