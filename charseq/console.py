"""The `charseq` command's entry point: Ctrl-C while it is still starting up ends it
quietly (exit 130), as it does once it runs."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from charseq.cli import cli
    except KeyboardInterrupt:
        sys.exit(130)
    cli(prog_name="charseq")
