"""Finds plugins (bundled and installed) and keeps what they register, by name."""

from __future__ import annotations

import functools
import inspect
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any

import pluggy

from charseq import hookspecs
from charseq.errors import CharseqError, PluginWarning, UsageError

ENTRY_POINT_GROUP = "charseq"
# Bundled plugins, registered through the same door as installed ones.
DEFAULT_PLUGINS = (
    "charseq.plugins.corpora",
    "charseq.plugins.samplers",
    "charseq.plugins.callbacks",
)
KINDS = {"corpus": "register_corpora", "sampler": "register_samplers", "callback": "register_callbacks"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _warn(message: str) -> None:
    """Skip and warn; with CHARSEQ_STRICT_PLUGINS=1, stop instead (for plugin authors)."""
    if os.environ.get("CHARSEQ_STRICT_PLUGINS", "") not in ("", "0"):
        raise CharseqError(message)
    warnings.warn(message, PluginWarning, stacklevel=3)


@dataclass(frozen=True)
class Registered:
    """One corpus provider, sampler or callback, and the plugin it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    help: str
    plugin: str

    def build(self, *args: Any, **options: Any) -> Any:
        """Call the factory, turning options it does not take into a usage error."""
        try:
            inspect.signature(self.factory).bind(*args, **options)
        except TypeError as exc:
            raise UsageError(f"{self.kind} {self.name!r}: {exc}") from None
        except ValueError:  # no signature to check (a builtin): let the call decide
            pass
        return self.factory(*args, **options)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str | None
    version: str | None
    registers: dict[str, list[str]]


class Registry:
    """The loaded plugins and everything they registered."""

    def __init__(self, plugin_manager: pluggy.PluginManager, distributions: dict[str, metadata.Distribution]):
        self.plugin_manager = plugin_manager
        self._distributions = distributions
        self._items: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        for plugin_name, plugin in plugin_manager.list_name_plugin():
            for kind, hook_name in KINDS.items():
                for impl in getattr(plugin_manager.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        self._call_register_hook(kind, hook_name, impl, plugin_name)

    def describe(self, plugin_name: str) -> str:
        """'plugin NAME (package PACKAGE)', for messages."""
        return _describe(plugin_name, self._distributions.get(plugin_name))

    def _call_register_hook(self, kind: str, hook_name: str, impl, plugin_name: str) -> None:
        """One plugin's register hook; if it raises, whatever it registered there is dropped."""
        added: list[str] = []
        try:
            impl.function(register=self._register_function(kind, plugin_name, added))
        except Exception as exc:
            for name in added:
                del self._items[kind][name]
            _warn(f"{self.describe(plugin_name)} raised in {hook_name} ({type(exc).__name__}: {_first_line(exc)}); "
                  f"its {kind} registrations are skipped")

    def _register_function(self, kind: str, plugin_name: str, added: list[str]) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], help: str = "") -> None:
            who = self.describe(plugin_name)
            if not isinstance(name, str) or not _NAME.match(name):
                _warn(f"{who} registered {kind} name {name!r}, which is skipped: names are letters, "
                      "digits and . _ + - (no spaces or ':')")
                return
            if not callable(factory):
                _warn(f"{who} registered {kind} {name!r} with a non-callable factory; skipped")
                return
            taken = self._items[kind].get(name)
            if taken is not None:
                _warn(f"{who} registered {kind} {name!r}, already registered by {self.describe(taken.plugin)}; "
                      "the first one is kept")
                return
            help_text = help or (inspect.getdoc(factory) or "").split("\n", 1)[0]
            self._items[kind][name] = Registered(kind, name, factory, help_text, plugin_name)
            added.append(name)

        return register

    def all(self, kind: str) -> dict[str, Registered]:
        return dict(sorted(self._items[kind].items()))

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self._items[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._items[kind])) or "none"
            raise UsageError(f"unknown {kind} {name!r}; known: {known}") from None

    def plugins(self) -> list[PluginInfo]:
        import charseq

        infos = []
        for plugin_name, _ in self.plugin_manager.list_name_plugin():
            dist = self._distributions.get(plugin_name)
            registers = {
                kind: [r.name for r in items.values() if r.plugin == plugin_name]
                for kind, items in self._items.items()
            }
            if dist is None:
                package, version = "charseq", charseq.__version__
            else:
                package, version = dist.metadata["Name"], dist.version
            infos.append(PluginInfo(plugin_name, package, version, {k: v for k, v in registers.items() if v}))
        return infos


def _selected(entry_point: metadata.EntryPoint) -> bool:
    """CHARSEQ_LOAD_PLUGINS narrows which installed plugins load: unset means all,
    empty means none, otherwise a comma-separated list of entry-point or package names."""
    wanted = os.environ.get("CHARSEQ_LOAD_PLUGINS")
    if wanted is None:
        return True
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    package = entry_point.dist.metadata["Name"] if entry_point.dist else None
    return entry_point.name in names or package in names


def load_registry(extra_plugins: tuple[object, ...] = ()) -> Registry:
    """A fresh registry: bundled plugins, installed entry points, then `extra_plugins`.

    An installed plugin that fails to import or to register is skipped with a
    PluginWarning naming it and its package; the rest load as usual.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    distributions: dict[str, metadata.Distribution] = {}
    for module_name in DEFAULT_PLUGINS:
        _register(pm, import_module(module_name), module_name, None)
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _selected(entry_point):
            continue
        who = _describe(entry_point.name, entry_point.dist)
        if pm.has_plugin(entry_point.name):
            _warn(f"{who} has the name of a plugin already loaded; skipped")
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            _warn(f"{who} failed to import ({type(exc).__name__}: {_first_line(exc)}); skipped")
            continue
        if _register(pm, plugin, entry_point.name, entry_point.dist) and entry_point.dist is not None:
            distributions[entry_point.name] = entry_point.dist
    for plugin in extra_plugins:
        _register(pm, plugin, None, None)
    return Registry(pm, distributions)


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None,
              dist: metadata.Distribution | None) -> bool:
    """Register one plugin, or skip it with a warning when pluggy refuses its hooks."""
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    try:
        pm.register(plugin, name=name)
        pm.check_pending()  # a hook no spec knows, such as a misspelt name
    except pluggy.PluginValidationError as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        _warn(f"{_describe(name, dist)} has a hook charseq does not know or cannot call ({_first_line(exc)}); "
              "skipped")
        return False
    except ValueError as exc:  # pluggy refuses a second plugin of the same name or object
        _warn(f"{_describe(name, dist)} cannot load ({_first_line(exc)}); skipped")
        return False
    return True


def _describe(plugin_name: str, dist: metadata.Distribution | None) -> str:
    if dist is not None:
        return f"plugin {plugin_name!r} (package {dist.metadata['Name']!r})"
    if plugin_name in DEFAULT_PLUGINS:
        return f"plugin {plugin_name!r} (bundled with charseq)"
    return f"plugin {plugin_name!r}"


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry, loaded on first use so that `--help` stays fast.

    ``get_registry.cache_clear()`` makes the next call load plugins again.
    """
    return load_registry()


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME[:ARG]`` -> (NAME, ARG or None)."""
    name, sep, arg = spec.partition(":")
    if not name or (sep and not arg):
        raise UsageError(f"malformed {spec!r}: expected NAME or NAME:ARG")
    return name, arg if sep else None


def parse_options(arg: str | None) -> dict[str, Any]:
    """``key=value,key=value`` -> keyword options; values read as int, float, bool or str."""
    options: dict[str, Any] = {}
    if not arg:
        return options
    for item in arg.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UsageError(f"malformed option {item!r}: expected key=value")
        options[key] = _parse_value(value.strip())
    return options


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
