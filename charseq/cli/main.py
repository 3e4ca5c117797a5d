"""The `charseq` command: a thin shell over the core's Run, generation and listings.

What a run is, how it resumes, what it may write and how it fails live in the core; each
command's module turns options into calls and results into lines and exit codes, and the
group (charseq.cli.group) turns every error into one line.
"""

from __future__ import annotations

import click

from charseq.cli.cache import cache
from charseq.cli.evaluate import evaluate_command
from charseq.cli.generate import generate
from charseq.cli.group import CharseqGroup
from charseq.cli.listings import LISTINGS, plugins
from charseq.cli.plot import plot
from charseq.cli.train import train
from charseq.version import __version__


@click.group(cls=CharseqGroup)
@click.version_option(__version__, prog_name="charseq")
@click.option("--debug", is_flag=True, help="Show the full traceback of unexpected errors.")
def cli(debug: bool) -> None:
    """Character-level text generation with recurrent networks (rnn, gru, lstm) and a transformer, extended by plugins."""


for _command in (train, generate, evaluate_command, plot, cache, plugins, *LISTINGS):
    cli.add_command(_command)
