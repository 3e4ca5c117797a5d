"""What a command prints: lines that outlive a closed pipe or a full disk, and JSON lines.

Part of the toolkit a command plugin builds on (docs/plugins.md): `say` and `json_line`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import click

from charseq.errors import CharseqError


def say(text: str = "", err: bool = False, essential: bool = False) -> None:
    """click.echo that outlives its stream: a closed pipe (`charseq train | head`), a full
    disk, /dev/full. Training goes on and saves; what it would have printed is dropped.
    When the text is the command's result (`eval --json`, a listing), a stream that cannot
    take it is an error, but for a closed pipe, whose reader has what it wanted."""
    try:
        click.echo(text, err=err)
    except BrokenPipeError:
        drop_output(sys.stderr if err else sys.stdout)
    except OSError as exc:
        drop_output(sys.stderr if err else sys.stdout)
        if essential:
            raise CharseqError(f"cannot write to standard output: {exc.strerror or exc}") from None


def drop_output(stream: IO[Any]) -> None:
    """Point a closed stream's descriptor at /dev/null, so that later writes (and the
    interpreter's last flush) succeed silently."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def settle(stream: IO[Any] | None) -> None:
    """Flush what an interrupted write left in `stream`'s buffer now, or drop it when the
    reader is gone, so that the interpreter's last flush has nothing to complain about."""
    if stream is None:
        return
    try:
        stream.flush()
    except (OSError, ValueError):
        drop_output(stream)


_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_line(value: object) -> str:
    """One JSON object on one line, also for readers that split lines where Python's
    str.splitlines() does (JSON escapes every other character that would break it)."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in _LINE_BREAKS.items():
        text = text.replace(char, escaped)
    return text

