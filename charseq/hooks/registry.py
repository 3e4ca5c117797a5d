"""Finds plugins (bundled and installed) and keeps what they register, by name."""

from __future__ import annotations

import codecs
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

from charseq.errors import CharseqError, PluginWarning, UsageError, label
from charseq.files import first_line
from charseq.hooks import specs as hookspecs
from charseq.hooks.options import (OptionInfo, convert_value, declared_options, documented_options, parse_options,
                                  shown_value, type_hints)
from charseq.hooks.specs import SET_BY_CHARSEQ
from charseq.version import __version__


ENTRY_POINT_GROUP = "charseq"
# Bundled plugins, registered through the same door as installed ones.
DEFAULT_PLUGINS = (
    "charseq.plugins.corpora",
    "charseq.plugins.samplers",
    "charseq.plugins.callbacks",
    "charseq.plugins.models",
    "charseq.plugins.export",
    "charseq.plugins.serve",
    "charseq.plugins.sweep",
)
KINDS = {"corpus": "register_corpora", "sampler": "register_samplers", "callback": "register_callbacks",
         "model": "register_models", "command": "register_commands"}
CORPUS_SETTINGS = ("encoding", "exact")  # corpus options a front end sets as settings of their own
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _strict() -> bool:
    return os.environ.get("CHARSEQ_STRICT_PLUGINS", "") not in ("", "0")


def _warn(message: str, consequence: str = "skipped", detail: BaseException | None = None) -> None:
    """Warn that `message` happened and that charseq did `consequence` about it (it skipped
    the plugin); with CHARSEQ_STRICT_PLUGINS=1, stop instead, saying so rather than what
    would have been done (for plugin authors). With --debug, `detail`'s traceback follows."""
    trace = ""
    if detail is not None and _debug:
        import traceback

        trace = "\n" + "".join(traceback.format_exception(type(detail), detail, detail.__traceback__)).rstrip()
    if _strict():
        raise CharseqError(f"{message} (an error, as CHARSEQ_STRICT_PLUGINS is set){trace}")
    warnings.warn(f"{message}; {consequence}{trace}" if consequence else message + trace, PluginWarning, stacklevel=3)


_debug = False


def set_debug(debug: bool) -> None:
    """With `debug` (charseq --debug), a plugin that fails to import is reported with its
    traceback, so that its author can see where."""
    global _debug
    _debug = bool(debug)


@dataclass(frozen=True)
class Registered:
    """One corpus provider, sampler, callback or command, and the plugin it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    help: str
    plugin: str

    def build(self, *args: Any, **options: Any) -> Any:
        """Call the factory with `options` converted to the types it declares (options from
        the command line arrive as text); a wrong name or value is a one-line UsageError
        that names what was being built."""
        converted = self.convert(options, args)
        try:
            return self.factory(*args, **converted)
        except UsageError as exc:
            what = f"{self.kind} {self.name!r}"
            if str(exc).startswith(what) or self.kind == "corpus":
                raise
            raise UsageError(f"{what}: {exc}") from None

    def defaults(self) -> dict[str, Any]:
        """The factory's options that have plain default values (numbers, text, None)."""
        try:
            parameters = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):
            return {}
        return {p.name: p.default for p in parameters
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty
                and (p.default is None or isinstance(p.default, (bool, int, float, str)))
                and p.name not in self._set_by_charseq()}

    def _set_by_charseq(self) -> tuple[str, ...]:
        """The factory's arguments that are not options: a corpus's ARG, a model's sizes."""
        return SET_BY_CHARSEQ.get(self.kind, ())

    def _parameters(self) -> list[inspect.Parameter]:
        """The factory's parameters a user may set by name, in its order."""
        try:
            parameters = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):
            return []
        return [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in self._set_by_charseq()]

    def option_names(self) -> list[str]:
        """The options a user may give (not charseq's own arguments), in the factory's order."""
        return [p.name for p in self._parameters()]

    def takes(self, option: str) -> bool:
        """Whether the factory accepts `option`, by name or through ``**options``: the CLI
        passes --temperature only to a sampler that does."""
        return option in self.option_names() or self.takes_any()

    def options(self) -> list[OptionInfo]:
        """Each option with its default (``OptionInfo.REQUIRED`` when it has none) and its help,
        from a line of the factory's docstring (a class's, or its __init__'s) that starts with
        the option's name and a colon: ``k: how many of the most likely symbols to keep``."""
        documented = documented_options(self.factory, self.option_names())
        declared = declared_options(self.factory)
        return [OptionInfo(p.name, OptionInfo.REQUIRED if p.default is p.empty else p.default,
                           declared[p.name].help if p.name in declared and declared[p.name].help
                           else documented.get(p.name, "")) for p in self._parameters()]

    def takes_any(self) -> bool:
        """Whether the factory takes ``**options``: options beyond those it names."""
        try:
            return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.factory).parameters.values())
        except (TypeError, ValueError):
            return False

    def bare_value_hint(self, value: str) -> str:
        """What to say about a bare ``NAME:VALUE`` given where ``NAME:key=value`` belongs:
        the option meant when the factory has one (a sampler's temperature aside, which
        --temperature sets), else the options it has."""
        names = self.option_names()
        if value.replace("-", "_") in names:
            option = next(o for o in self.options() if o.name == value.replace("-", "_"))
            example = "VALUE" if option.default is OptionInfo.REQUIRED else shown_value(option.default)
            return f"; give {option.name} a value, such as {self.name}:{option.name}={example}"
        own = [name for name in names if not (self.kind == "sampler" and name == "temperature")] or names
        if len(own) == 1:
            return f"; did you mean {self.name}:{own[0]}={value}?"
        what = f"{self.kind} {self.name!r}"
        return f"; the options of {what} are {', '.join(names)}" if names else f"; {what} takes no options"

    def effective(self, options: dict[str, Any], complete: bool = True) -> dict[str, Any]:
        """The options a factory is built with: its defaults, then `options` converted, an
        ``encoding`` by its codec's own name (utf8 and UTF-8 are utf-8). `complete`: the
        options are all the factory is called with (a model's get charseq's arguments too)."""
        effective = {**self.defaults(), **self.convert(options, complete=complete)}
        if isinstance(effective.get("encoding"), str):
            try:
                effective["encoding"] = codecs.lookup(effective["encoding"]).name
            except LookupError:
                pass  # the factory says what is wrong with it
        return effective

    def convert(self, options: dict[str, Any], args: tuple[Any, ...] = (), complete: bool = True) -> dict[str, Any]:
        """The options as the factory takes them, checked against its signature and types."""
        what = f"{self.kind} {self.name!r}"
        try:
            signature = inspect.signature(self.factory)
        except (TypeError, ValueError):  # no signature to check (a builtin): let the call decide
            return dict(options)
        parameters = signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        hints = type_hints(self.factory)
        schemas = declared_options(self.factory)
        converted = {}
        for key, value in options.items():
            parameter = parameters.get(key)
            if parameter is None or parameter.kind in (parameter.VAR_POSITIONAL, parameter.POSITIONAL_ONLY):
                if takes_any:
                    converted[key] = value
                    continue
                valid = self.option_names()
                if self.kind == "corpus" and key in CORPUS_SETTINGS:  # given as a setting: answer in its words
                    raise UsageError(f"{what} does not take {label(key)}")
                raise UsageError(f"{what} has no option {key!r}; its options are {', '.join(valid) or 'none'}")
            declared = hints.get(key)
            if declared is None and parameter.default not in (inspect.Parameter.empty, None):
                declared = type(parameter.default)
            converted[key] = convert_value(value, declared, f"{what}: {key}")
            if key in schemas:
                schemas[key].check(converted[key], f"{what}: {key}")
        try:
            if complete:
                signature.bind(*args, **converted)
        except TypeError as exc:
            raise UsageError(f"{what}: {exc}") from None
        return converted


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
        self._commands_loaded = False
        for kind in ("corpus", "sampler", "callback", "model"):
            self._load(kind)

    def _load(self, kind: str) -> None:
        hook_name = KINDS[kind]
        for plugin_name, plugin in self.plugin_manager.list_name_plugin():
            for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                if impl.plugin is plugin:
                    self._call_register_hook(kind, hook_name, impl, plugin_name)

    def describe(self, plugin_name: str) -> str:
        """'plugin NAME (package PACKAGE)', for messages."""
        return _describe(plugin_name, self._distributions.get(plugin_name))

    def _call_register_hook(self, kind: str, hook_name: str, impl, plugin_name: str) -> None:
        """One plugin's register hook; if it raises, whatever it registered there is dropped."""
        added: list[str] = []
        register = self._register_function(kind, plugin_name, added)
        try:
            if kind == "command":
                impl.function(cli=_command_collector(register))
            else:
                impl.function(register=register)
        except Exception as exc:
            for name in added:
                del self._items[kind][name]
            _warn(f"{self.describe(plugin_name)} raised in {hook_name} ({type(exc).__name__}: {first_line(exc)})",
                  f"its {kind} registrations are skipped", exc)

    def _register_function(self, kind: str, plugin_name: str, added: list[str]) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], help: str = "") -> None:
            who = self.describe(plugin_name)
            if not isinstance(name, str) or not _NAME.match(name):
                _warn(f"{who} registered {kind} name {name!r}, but names are letters, digits and . _ + - "
                      "(no spaces or ':')")
                return
            if not callable(factory):
                _warn(f"{who} registered {kind} {name!r} with a non-callable factory")
                return
            taken = self._items[kind].get(name)
            if taken is not None:
                _warn(f"{who} registered {kind} {name!r}, already registered by {self.describe(taken.plugin)}",
                      "the first one is kept")
                return
            help_text = help or (getattr(factory, "help", None) if kind == "command" else None) or \
                inspect.getdoc(factory) or ""
            help_text = str(help_text).strip().split("\n", 1)[0]
            self._items[kind][name] = Registered(kind, name, factory, help_text, plugin_name)
            added.append(name)

        return register

    def all(self, kind: str) -> dict[str, Registered]:
        self._load_commands_for(kind)
        return dict(sorted(self._items[kind].items()))

    def _load_commands_for(self, kind: str) -> None:
        """Commands are collected on first use: making them imports click and runs plugin code
        that running a built-in command never needs."""
        if kind == "command" and not self._commands_loaded:
            self._commands_loaded = True
            self._load("command")

    def commands(self, reserved: set[str] | frozenset[str] = frozenset()) -> dict[str, Registered]:
        """Plugins' subcommands, less any that would take a `reserved` (built-in) name."""
        found = self.all("command")
        for name in sorted(set(found) & set(reserved)):
            _warn(f"{self.describe(found[name].plugin)} registered command {name!r}, which is a built-in command",
                  "its command is left out")
            del self._items["command"][name]
            del found[name]
        return found

    def culprit(self, exc: BaseException) -> str | None:
        """The installed plugin whose code raised `exc`, described for a message, if any:
        the innermost frame of the traceback that belongs to a plugin's package."""
        modules = {}
        for name, plugin in self.plugin_manager.list_name_plugin():
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            if module and not module.startswith("charseq."):
                modules[module.split(".")[0]] = name
        traceback, found = exc.__traceback__, None
        while traceback is not None:
            module = traceback.tb_frame.f_globals.get("__name__", "")
            if module.split(".")[0] in modules:
                found = modules[module.split(".")[0]]
            traceback = traceback.tb_next
        return self.describe(found) if found else None

    def get(self, kind: str, name: str) -> Registered:
        self._load_commands_for(kind)
        try:
            return self._items[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._items[kind])) or "none"
            raise UsageError(f"unknown {kind} {name!r}; known: {known}") from None

    def plugins(self) -> list[PluginInfo]:
        self._load_commands_for("command")
        infos = []
        for plugin_name, _ in self.plugin_manager.list_name_plugin():
            dist = self._distributions.get(plugin_name)
            registers = {
                kind: [r.name for r in items.values() if r.plugin == plugin_name]
                for kind, items in self._items.items()
            }
            if dist is None:
                package, version = "charseq", __version__
            else:
                package, version = dist.metadata["Name"], dist.version
            infos.append(PluginInfo(plugin_name, package, version, {k: v for k, v in registers.items() if v}))
        return infos


def _command_collector(register: Callable[..., None]) -> Any:
    """What register_commands(cli) receives: a click group that registers each command added
    to it, so commands pass the same checks as every other kind (and cannot touch charseq's
    own group)."""
    import click

    class Collector(click.Group):
        def add_command(self, cmd: click.Command, name: str | None = None) -> None:
            register(name or cmd.name, cmd)

    return Collector("charseq")


def _selected(entry_point: metadata.EntryPoint) -> bool:
    """CHARSEQ_LOAD_PLUGINS narrows which installed plugins load: unset means all,
    empty means none, otherwise a comma-separated list of entry-point or package names."""
    wanted = _wanted_plugins()
    return wanted is None or bool(wanted.keys() & _names_of(entry_point))


def _wanted_plugins() -> dict[str, str] | None:
    """The names CHARSEQ_LOAD_PLUGINS lists, normalised, each to its spelling there; None
    when it is unset (every installed plugin loads)."""
    wanted = os.environ.get("CHARSEQ_LOAD_PLUGINS")
    if wanted is None:
        return None
    return {_normal(name): name.strip() for name in wanted.split(",") if name.strip()}


def _normal(name: str) -> str:
    """A plugin or package name as pip compares them: charseq_upper is charseq-upper."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _names_of(entry_point: metadata.EntryPoint) -> set[str]:
    """The names CHARSEQ_LOAD_PLUGINS may give an installed plugin by: its entry point's, its package's."""
    package = entry_point.dist.metadata["Name"] if entry_point.dist else None
    return {_normal(entry_point.name)} | ({_normal(package)} if package else set())


def _check_wanted(entry_points: list[metadata.EntryPoint]) -> None:
    """A name in CHARSEQ_LOAD_PLUGINS that no installed plugin has (a typo, a package not
    installed in this environment) is a warning naming the plugins that are."""
    wanted = _wanted_plugins()
    if not wanted:
        return
    known = set().union(*(_names_of(entry_point) for entry_point in entry_points))
    missing = [spelled for name, spelled in wanted.items() if name not in known]
    if not missing:
        return
    installed = sorted({f"{entry_point.name} (package {entry_point.dist.metadata['Name']})" if entry_point.dist
                        else entry_point.name for entry_point in entry_points})
    names = " and ".join(", ".join(repr(name) for name in missing).rsplit(", ", 1))
    _warn(f"CHARSEQ_LOAD_PLUGINS names {names}, which {'is' if len(missing) == 1 else 'are'} not installed; "
          + (f"the installed plugins are {', '.join(installed)}" if installed else "no plugins are installed"), "")


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
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    _check_wanted(entry_points)
    for entry_point in entry_points:
        if not _selected(entry_point):
            continue
        who = _describe(entry_point.name, entry_point.dist)
        if pm.has_plugin(entry_point.name):
            _warn(f"{who} has the name of a plugin already loaded")
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            _warn(f"{who} failed to import ({type(exc).__name__}: {first_line(exc)})", detail=exc)
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
        _warn(f"{_describe(name, dist)} has a hook charseq does not know or cannot call ({first_line(exc)})")
        return False
    except ValueError as exc:  # pluggy refuses a second plugin of the same name or object
        _warn(f"{_describe(name, dist)} cannot load ({first_line(exc)})")
        return False
    return True


def _describe(plugin_name: str, dist: metadata.Distribution | None) -> str:
    if dist is not None:
        return f"plugin {plugin_name!r} (package {dist.metadata['Name']!r})"
    if plugin_name in DEFAULT_PLUGINS:
        return f"plugin {plugin_name!r} (bundled with charseq)"
    return f"plugin {plugin_name!r}"




def reload_plugins() -> None:
    """Load plugins again on next use: after installing one, or in a plugin's own tests
    after changing CHARSEQ_LOAD_PLUGINS."""
    get_registry.cache_clear()


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry, loaded on first use so that `--help` stays fast.

    ``get_registry.cache_clear()`` makes the next call load plugins again.
    """
    return load_registry()


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME[:ARG]`` -> (NAME, ARG or None)."""
    if not isinstance(spec, str):
        raise UsageError(f"expected NAME or NAME:ARG, got {spec!r}")
    name, sep, arg = spec.partition(":")
    if not name or (sep and not arg):
        raise UsageError(f"malformed {spec!r}: expected NAME or NAME:ARG")
    return name, arg if sep else None


def named(kind: str, spec: str, options: dict[str, Any]) -> tuple[Registered, dict[str, Any]]:
    """The registered item of a ``NAME[:key=value,...]`` spec and its options (keyword
    options override the spec's)."""
    name, arg = parse_spec(spec)
    registered = get_registry().get(kind, name)
    return registered, {**parse_options(arg, registered), **options}


