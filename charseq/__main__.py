"""`python -m charseq` runs the CLI."""

from charseq.cli import cli

cli(prog_name="charseq")
