"""A model by name: the registered factory called with charseq's arguments and the user's
options, and the result checked against the model contract before anything uses it."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from charseq.errors import CharseqError, UsageError, counted, setting
from charseq.hooks.options import format_options
from charseq.hooks.registry import get_registry, named
from charseq.hooks.specs import CORE_ARGUMENTS
from charseq.models.base import DTYPES, Model, check_model


def model_choice(spec: str, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The registered model a ``NAME[:key=value,...]`` spec names, and the options it is
    built with (`options` over the spec's, its factory's defaults filled in, so two spellings
    of one choice are equal)."""
    registered, options = named("model", spec, dict(options or {}))
    given = sorted(set(options) & set(CORE_ARGUMENTS))
    if given:
        raise UsageError(f"model {registered.name!r}: {given[0]} is not a model option; charseq sets it "
                         f"({setting('hidden_size')}, {setting('seed')})")
    return registered.name, registered.effective(options, complete=False)  # an unknown option is refused here


def model_defaults(name: str) -> dict[str, Any]:
    """The training settings a registered model suggests (its factory's `training_defaults`):
    they stand above a corpus's suggestions and below what is given. A model whose training
    differs from the recurrent cells' (a transformer's rate, optimizer and width) says so here."""
    suggested = getattr(get_registry().get("model", name).factory, "training_defaults", None) or {}
    if not isinstance(suggested, dict) or not all(isinstance(k, str) for k in suggested):
        raise CharseqError(f"{model_label(name)}: its training_defaults {suggested!r} are not a mapping of "
                           "training settings to values")
    return dict(suggested)


def model_spec(name: str, options: dict[str, Any]) -> str:
    """A model choice as it is typed, options at their defaults left out: lstm:layers=2."""
    try:
        defaults = get_registry().get("model", name).defaults()
    except UsageError:
        defaults = {}
    shown = {k: v for k, v in sorted(options.items()) if k not in defaults or defaults[k] != v}
    return name + (":" + format_options(shown) if shown else "")


def get_model(spec: str, vocab_size: int, hidden_size: int, *, seed: int | None = 0, dtype: Any = "float32",
              **options: Any) -> Model:
    """A model by name, with options: ``get_model("lstm:layers=2", 65, 256)`` or
    ``get_model("lstm", 65, 256, layers=2)``. ``seed=None`` leaves the weights for the caller
    to fill (a checkpoint's)."""
    return build_model(spec, options, vocab_size, hidden_size, seed=seed, dtype=dtype)


def build_model(spec: str, options: dict[str, Any], vocab_size: int, hidden_size: int, *, seed: int | None = 0,
                dtype: Any = "float32") -> Model:
    """get_model with the options as a mapping (from a file: any key at all is an option)."""
    name, options = model_choice(spec, options)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in DTYPES:
        raise UsageError(f"model {name!r}: dtype must be one of {', '.join(DTYPES)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise UsageError(f"model {name!r}: seed must be a whole number or None, got {seed!r}")
    registered = get_registry().get("model", name)
    what = f"{get_registry().describe(registered.plugin)}: model {name!r}"
    arguments = {"vocab_size": vocab_size, "hidden_size": hidden_size, "seed": seed, "dtype": dtype,
                 **registered.convert(options, complete=False)}
    try:
        inspect.signature(registered.factory).bind(**arguments)
    except TypeError as exc:
        raise CharseqError(f"{what}: its factory does not take what charseq gives it ({exc})") from None
    except ValueError:
        pass  # no signature to check
    try:
        model = registered.factory(**arguments)
    except UsageError as exc:
        raise UsageError(f"model {name!r}: {exc}") from None
    except MemoryError:
        raise UsageError(f"model {name!r} with hidden size {hidden_size} and options {options} needs more memory "
                         f"than this machine has; use a smaller {setting('hidden_size')}") from None
    check_model(model, what)
    if model.name != name:
        raise CharseqError(f"{what} says its name is {model.name!r}; a model's name is the one it is registered under")
    if (model.vocab_size, model.hidden_size) != (vocab_size, hidden_size) or model.flat.dtype != dtype:
        raise CharseqError(f"{what} was asked for {counted(vocab_size, 'symbol')}, {counted(hidden_size, 'unit')} and {dtype} and has "
                           f"{model.vocab_size}, {model.hidden_size} and {model.flat.dtype}")
    try:
        rebuilt = model_choice(name, model.options())
    except UsageError as exc:
        raise CharseqError(f"{what}: its options() cannot rebuild it from a checkpoint ({exc})") from None
    if rebuilt[1] != model.options():
        raise CharseqError(f"{what}: its options() {model.options()} are not those it is built with {rebuilt[1]}")
    return model


def model_label(name: str) -> str:
    """'model NAME of plugin P (package Q)', for a message about a model's own doing."""
    try:
        return f"model {name!r} of {get_registry().describe(get_registry().get('model', name).plugin)}"
    except UsageError:
        return f"model {name!r}"


def model_package(name: str) -> str | None:
    """The package that provides model `name` (None when bundled): what a checkpoint records
    so that a machine without it can say what to install."""
    registry = get_registry()
    plugin = registry.get("model", name).plugin
    dist = registry._distributions.get(plugin)
    return dist.metadata["Name"] if dist is not None else None
