"""The `charseq` command, and the toolkit a command plugin builds on (docs/plugins.md).

``cli`` is the click group; a plugin's ``register_commands(cli)`` adds its commands, and
may use the options and helpers below, the same ones charseq's own commands use.
"""

from charseq.cli.main import cli

__all__ = ["cli"]
