"""Where a run may write, decided before its first step.

An output is never an input (a corpus file, or the checkpoint being resumed when the
output is not a checkpoint of the run), never a directory, a device or a pipe, and never
two outputs at once. A file already there is replaced only when it is the run's own (a
checkpoint or a metrics log that records the run's id) or the user said ``force``. What a
file says about itself can only make that file replaceable; no path read from a file
decides what else is written or deleted.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from charseq.errors import UsageError
from charseq.files import kind_of, shown

CHECKPOINT, METRICS, FILE = "checkpoint", "metrics", "file"
_FIELD = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class Output:
    """A file a run writes: ``path`` is absolute and may be a template of ``{fields}``."""

    path: str
    what: str  # for messages: "--out", "callback 'checkpoint' option path"
    kind: str = FILE  # CHECKPOINT, METRICS or FILE: what makes an existing file the run's own

    @property
    def is_template(self) -> bool:
        return bool(_FIELD.search(self.path))


def check_outputs(outputs: Iterable[Output], run_id: str, inputs: Iterable[Path], resumed: Path | None = None,
                  force: bool = False) -> None:
    """Refuse, in one line, any output the run may not write; see the module's docstring.
    `inputs` are never written; `resumed`, the checkpoint a resumed run was read from, only
    by the run's checkpoints."""
    outputs = list(outputs)
    inputs = [Path(p) for p in inputs]
    fixed = [o for o in outputs if not o.is_template]
    for i, first in enumerate(fixed):
        for second in fixed[i + 1 :]:
            if _same(Path(first.path), Path(second.path)):
                raise UsageError(f"{first.what} and {second.what} name the same file {shown(first.path)!r}; give each its "
                                 "own")
    for output in outputs:
        sources = inputs + ([resumed] if resumed is not None and output.kind != CHECKPOINT else [])
        if output.is_template:
            _check_template(output, run_id, sources, force)
        else:
            _check_file(output, run_id, sources, force)


def _check_file(output: Output, run_id: str, inputs: list[Path], force: bool) -> None:
    path = Path(output.path)
    kind = kind_of(path)
    if kind is not None:
        raise UsageError(f"{output.what} {shown(output.path)!r} is {kind}; give a file name")
    _check_directory(output, path.parent, create=False)
    for source in inputs:
        if _same(path, source):
            raise UsageError(f"{output.what} {shown(output.path)!r} is one of the run's inputs; writing it would destroy it")
    if path.exists() and not force and not _own(path, output.kind, run_id):
        raise UsageError(f"{output.what} {shown(output.path)!r} {_describe(path, output.kind)}; give another path, or "
                         f"--force to replace it")


def _check_template(output: Output, run_id: str, inputs: list[Path], force: bool) -> None:
    fixed_part = output.path[: _FIELD.search(output.path).start()]
    _check_directory(output, Path(fixed_part if fixed_part.endswith(os.sep) else os.path.dirname(fixed_part)),
                     create=True)
    pattern = _FIELD.sub("*", glob.escape(output.path))
    for match in sorted(glob.glob(pattern)):
        path = Path(match)
        if any(_same(path, source) for source in inputs):
            raise UsageError(f"{output.what} {shown(output.path)!r} could write over {shown(match)!r}, one of the run's inputs")
        if not force and path.is_file() and not _own(path, output.kind, run_id):
            raise UsageError(f"{output.what} {shown(output.path)!r} could write over {shown(match)!r}, which "
                             f"{_describe(path, output.kind)}; choose another name, or --force to allow it")


def _check_directory(output: Output, directory: Path, create: bool) -> None:
    """The directory exists (or, for a template, can be made) and takes new files."""
    directory = directory if str(directory) else Path(".")
    existing = directory
    if create:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    if not existing.exists():
        raise UsageError(f"{output.what}: directory {shown(directory)!r} does not exist")
    if not existing.is_dir():
        raise UsageError(f"{output.what}: {shown(existing)!r} is not a directory")
    # Creating a file is the only sure test: permission bits do not stop root, and do not
    # show a read-only file system.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"{output.what}: directory {shown(existing)!r} is not writable ({exc.strerror})") from None


def _same(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same inode when both exist, else the same place."""
    try:
        if first.exists() and second.exists():
            return os.path.samefile(first, second)
        return os.path.realpath(first) == os.path.realpath(second)
    except OSError:
        return False


def _own(path: Path, kind: str, run_id: str) -> bool:
    """Whether the file at `path` records that this run wrote it (an empty file holds
    nothing to lose: a metrics log before its first evaluation)."""
    try:
        if path.stat().st_size == 0:
            return True
    except OSError:
        return False
    if kind == CHECKPOINT:
        from charseq.checkpoint import run_id_of

        return run_id_of(path) == run_id
    if kind == METRICS:
        try:
            with path.open(encoding="utf-8") as f:
                first = f.readline(1 << 20)
            return bool(first) and json.loads(first).get("run") == run_id
        except (OSError, ValueError, AttributeError):
            return False
    return True  # a plugin's own file: its callback decides what to do with it


def _describe(path: Path, kind: str) -> str:
    if kind == CHECKPOINT:
        from charseq.checkpoint import run_id_of

        if run_id_of(path) is not None:
            return f"holds a checkpoint of another run (to continue that run: charseq train --resume {shown(path)})"
    return "already exists and is not this run's"
