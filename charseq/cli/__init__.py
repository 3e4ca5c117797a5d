"""The `charseq` command, and the toolkit a command plugin builds on (docs/plugins.md).

``cli`` is the click group; a plugin's ``register_commands(cli)`` adds its commands, and
may use the options and helpers below: the same ones charseq's own commands use, so that a
third party's `charseq finetune` can take train's settings, its corpus and thread options,
and print as train does. Everything else under charseq.cli is private.
"""

from charseq.cli.main import cli
from charseq.cli.options import (complete_names, corpus_options, encoding_option, exact_text_option, json_option,
                                 shortcut_callbacks, threads_option, training_options)
from charseq.cli.output import json_line, say
from charseq.cli.plot import check_picture, save_picture

__all__ = ["check_picture", "cli", "complete_names", "corpus_options", "encoding_option", "exact_text_option",
           "json_line", "json_option", "save_picture", "say", "shortcut_callbacks", "threads_option",
           "training_options"]
