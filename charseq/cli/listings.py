"""`charseq plugins`, `models`, `corpora`, `samplers` and `callbacks`: what is installed."""

from __future__ import annotations

import json

import click

from charseq.cli.options import json_option
from charseq.cli.output import say
from charseq.hooks.registry import get_registry


@click.command(short_help="List the loaded plugins and what each registers.")
@json_option
def plugins(as_json):
    """List loaded plugins: name, package, version and what each registers."""
    group = click.get_current_context().find_root().command
    group.add_plugin_commands()  # type: ignore[attr-defined]  # refuses plugin commands that take built-in names, first
    infos = get_registry().plugins()
    if as_json:
        say(json.dumps([{"name": info.name, "package": info.package, "version": info.version,
                         "registers": info.registers} for info in infos], indent=2), essential=True)
        return
    for info in infos:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registers.items())
        say(f"{info.name} ({info.package} {info.version})  {provides or 'nothing registered'}", essential=True)


def _listing(kind: str):
    def command(as_json):
        items = get_registry().all(kind)
        if as_json:
            say(json.dumps([{"name": n, "help": i.help, "plugin": i.plugin, "options": [o.to_json() for o in i.options()]}
                            for n, i in items.items()], indent=2), essential=True)
            return
        width = max((len(name) for name in items), default=0)
        for name, item in items.items():
            say(f"{name:<{width}}  {item.help}  [{item.plugin}]", essential=True)
            for line in _option_lines(item, indent=width + 2):
                say(line, essential=True)

    return json_option(command)


def _option_lines(item, indent: int) -> list[str]:
    """An item's options under its line, aligned with its help: `k=40  how many ...`."""
    from charseq.hooks.options import OptionInfo, shown_value

    options = [(f"{o.name} (required)" if o.default is OptionInfo.REQUIRED else f"{o.name}={shown_value(o.default)}",
                o.help) for o in item.options()]
    if item.takes_any():
        options.append(("...", "any other key=value: its factory takes them all"))
    width = max((len(shown) for shown, _ in options), default=0)
    return [f"{' ' * indent}{shown:<{width}}  {help}".rstrip() for shown, help in options]


LISTINGS = [click.command(name=name, short_help=f"List the available {name} and their options.",
                          help=f"List the available {name}, one per line, each with its options and "
                               "their defaults below it.")(_listing(kind))
            for kind, name in (("corpus", "corpora"), ("sampler", "samplers"), ("callback", "callbacks"),
                               ("model", "models"))]
