"""The callbacks of one run, called in the order they were given, as Keras calls them.

pluggy calls the most recently registered implementation first, so a run's callbacks are
not dispatched through pluggy: each hook goes to each callback in list order, with just
the arguments its method names. A callback's methods are hooks when they carry a name
from ``hookspecs.CallbackSpec`` (``@hookimpl`` on them is allowed and customary); a method
marked ``@hookimpl`` under any other name is an error, as it would be in pluggy.

Whatever a callback raises comes out as a CallbackError that says which callback it was,
so that the run can save itself and name the plugin.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from charseq.errors import CharseqError, UsageError
from charseq.hooks import specs as hookspecs
from charseq.hooks.registry import named
from charseq.training.context import Callback, overrides
from charseq.training.interrupt import Aborted

HOOKS: dict[str, tuple[str, ...]] = {
    name: tuple(p for p in inspect.signature(spec).parameters if p != "self")
    for name, spec in vars(hookspecs.CallbackSpec).items()
    if hasattr(spec, "charseq_spec")
}


class CallbackError(CharseqError):
    """A callback raised; ``label`` names it (and its plugin), ``error`` is what it raised."""

    def __init__(self, label: str, hook: str, error: BaseException, key: str | None = None):
        detail = str(error).split("\n", 1)[0]
        if not isinstance(error, CharseqError):
            detail = f"{type(error).__name__}: {detail}".rstrip(": ")
        super().__init__(f"{label} failed in {hook}: {detail}")
        self.label, self.hook, self.error, self.key = label, hook, error, key
        self.exit_code = error.exit_code if isinstance(error, CharseqError) else 1


@dataclass
class Entry:
    """One callback of a run: the object, a key for its saved state, and words for messages."""

    callback: Any
    key: str
    label: str
    hooks: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = field(default_factory=dict)

    @property
    def stateful(self) -> bool:
        return callable(getattr(self.callback, "state_dict", None)) and \
            callable(getattr(self.callback, "load_state_dict", None))


class CallbackList:
    """The callbacks of one run, in order."""

    def __init__(self, callbacks: Iterable[Any] = ()):
        self.entries: list[Entry] = []
        for callback in callbacks:
            self.add(callback)

    def add(self, callback: Any, name: str | None = None, label: str | None = None) -> Entry:
        """Add `callback`; `name` (its registered name) keys its saved state, `label` names
        it in messages. Unregistered callbacks are keyed and named by their class."""
        base = name or type(callback).__name__
        taken = {entry.key for entry in self.entries}
        key, n = base, 1
        while key in taken:  # the second of a kind is NAME-2, and so on
            n += 1
            key = f"{base}-{n}"
        entry = Entry(callback, key, label or f"callback {base!r}", _hooks_of(callback, label or base))
        self.entries.append(entry)
        return entry

    def __iter__(self) -> Iterator[Any]:
        return (entry.callback for entry in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def implement(self, hook: str) -> bool:
        """Whether any callback has `hook` (on_step_end is skipped entirely when none does)."""
        return any(hook in entry.hooks for entry in self.entries)

    def call(self, hook: str, trainer: Any, **arguments: Any) -> None:
        """Call `hook` on each callback in order; note which callback asked training to stop.
        A callback that raises does not keep the others from the event: they all see it, so
        the run saved after the failure is the run without that callback; then the first
        failure is raised."""
        arguments["trainer"] = getattr(trainer, "context", trainer)  # a Trainer's callbacks see its context
        failure: CallbackError | None = None
        for entry in self.entries:
            found = entry.hooks.get(hook)
            if found is None:
                continue
            method, names = found
            stopping = trainer.stop_training
            try:
                method(**{name: arguments[name] for name in names})
            except Aborted:  # a second Ctrl-C or SIGTERM, raised by the signal handler mid-hook
                raise
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a plugin's exit is its failure: the run is saved
                failure = failure or CallbackError(entry.label, hook, exc, entry.key)
                continue
            if trainer.stop_training and not stopping:
                trainer.stopped_by = entry.key
        if failure is not None:
            raise failure from failure.error

    def stateful(self) -> dict[str, Entry]:
        """Callbacks with state_dict/load_state_dict, by key."""
        return {entry.key: entry for entry in self.entries if entry.stateful}

    def state_of(self, entry: Entry) -> dict[str, Any]:
        try:
            state = entry.callback.state_dict()
        except Exception as exc:
            raise CallbackError(entry.label, "state_dict", exc, entry.key) from exc
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CallbackError(entry.label, "state_dict", UsageError("state_dict() must return a dict with str keys"),
                                entry.key)
        return state

    def load_state_of(self, entry: Entry, state: dict[str, Any]) -> None:
        try:
            entry.callback.load_state_dict(state)
        except Exception as exc:
            raise CallbackError(entry.label, "load_state_dict", exc, entry.key) from exc


def _hooks_of(callback: Any, label: str) -> dict[str, tuple[Callable[..., Any], tuple[str, ...]]]:
    """The callback's hook methods, checked against the specs, with the arguments each takes."""
    hooks = {}
    for attribute in dir(callback):
        if attribute.startswith("__"):
            continue
        try:
            method = getattr(callback, attribute)
        except Exception:
            continue
        marked = hasattr(method, "charseq_impl")
        if attribute not in HOOKS:
            if isinstance(callback, Callback) and attribute.startswith("on_") and callable(method):
                raise UsageError(f"{label}: {attribute}() is not a callback hook (the hooks are {', '.join(HOOKS)})")
            if marked:
                raise UsageError(f"{label}: {attribute}() is marked @hookimpl but is not a callback hook "
                                 f"(the hooks are {', '.join(HOOKS)})")
            continue
        if not callable(method) or not overrides(callback, attribute):  # a Callback's no-op is no hook
            continue
        try:
            parameters = inspect.signature(method).parameters
        except (TypeError, ValueError):
            raise UsageError(f"{label}: cannot read the arguments of {attribute}()") from None
        names = tuple(parameters)
        unknown = [n for n in names if n not in HOOKS[attribute]]
        if unknown or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters.values()):
            raise UsageError(f"{label}: {attribute}() takes {', '.join(names) or 'nothing'}; it may take any of "
                             f"{', '.join(HOOKS[attribute])}, by name")
        hooks[attribute] = (method, names)
    return hooks


def get_callback(spec: str, **options: Any) -> Any:
    """A training callback by name, with options: ``get_callback("early-stopping", patience=3)``."""
    registered, options = named("callback", spec, options)
    return registered.build(**options)
