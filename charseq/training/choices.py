"""A run's callbacks as its checkpoint records them: a choice (``"NAME:key=value"``, a
``(NAME, options)`` pair or a CallbackRef) with its options converted to the factory's
types and the paths it writes made absolute, so that a resumed run writes the same files
from any directory.
"""

from __future__ import annotations

import os
from typing import Any

from charseq.errors import UsageError
from charseq.hooks.options import parse_options
from charseq.hooks.registry import get_registry, parse_spec
from charseq.runs.spec import CallbackRef
from charseq.training import outputs


def output_options(factory: Any) -> dict[str, str]:
    """A callback factory's ``output_options``: the options that name files it writes, and
    what kind of file (outputs.CHECKPOINT, METRICS or FILE); a list means FILE."""
    declared = getattr(factory, "output_options", None) or {}
    if isinstance(declared, dict):
        return {str(k): str(v) for k, v in declared.items()}
    return {str(name): outputs.FILE for name in declared}


def writes_files(ref: CallbackRef) -> bool:
    """Whether a recorded callback names files it writes (its output_options are set)."""
    registry = get_registry()
    if ref.name not in registry.all("callback"):
        return False
    factory = registry.get("callback", ref.name).factory
    return any(ref.options.get(option) is not None for option in output_options(factory))


def listed(items: Any) -> list[Any]:
    """One item or several: a lone string (or CallbackRef, or (NAME, options) pair) is one."""
    single = isinstance(items, (str, CallbackRef)) or (
        isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], str) and isinstance(items[1], dict))
    return [items] if single else list(items)


def callback_ref(callback: str | CallbackRef | tuple[str, dict[str, Any]]) -> CallbackRef:
    """A callback choice as recorded: options converted to the factory's types, and its
    output paths made absolute so a resumed run writes the same files from anywhere."""
    if isinstance(callback, CallbackRef):
        name, options = callback.name, dict(callback.options)
    elif isinstance(callback, str):
        name, arg = parse_spec(callback)
        options = parse_options(arg, get_registry().get("callback", name))
    elif isinstance(callback, tuple) and len(callback) == 2 and isinstance(callback[0], str):
        name, options = callback[0], dict(callback[1])
    else:
        raise UsageError(f"a run's callbacks are given by name ('NAME:key=value'), got {callback!r}; "
                         "pass objects as extra_callbacks")
    registered = get_registry().get("callback", name)
    options = {**registered.defaults(), **registered.convert(options)}  # `patience=1` and `--patience 1` are one
    for option in output_options(registered.factory):
        if isinstance(options.get(option), (str, os.PathLike)):
            options[option] = absolute(options[option])
    for key, value in options.items():
        if not (value is None or isinstance(value, (bool, int, float, str))):
            options[key] = str(value)
    return CallbackRef(name, options)


def absolute(path: str | os.PathLike) -> str:
    """The path made absolute; a trailing slash (a directory's name) is kept, to be refused.
    In a template only the part before the first field is normalised, so that `{epoch}/..`
    stays visible (and is refused) rather than folded away."""
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise UsageError(f"a path must name a file, got {path!r}")
    text = os.path.expanduser(os.fspath(path))
    if text.endswith(os.sep + ".") or text == ".":
        text = text[:-1]  # 'x.npz/.' names a directory, as 'x.npz/' does
    field = text.find("{")
    if field >= 0:
        head, tail = os.path.split(text[:field])
        return os.path.join(os.path.abspath(head or "."), tail + text[field:])
    absolute = os.path.abspath(text)
    return absolute + os.sep if text.endswith(os.sep) and not absolute.endswith(os.sep) else absolute
