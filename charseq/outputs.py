"""Where a run may write, decided before its first step.

An output is never an input (a corpus file, or the checkpoint being resumed when the
output is not a checkpoint of the run), never a directory, a device or a pipe, and never
two outputs at once, and never inside a directory (or under a glob) the corpus is read
from, where a resumed run would read it as text. A file already there is replaced only
when it is the run's own (a checkpoint or a metrics log that records the run's id) or the
user said ``force``; and a resumed run that changes its settings or callbacks (a branch)
does not replace the run's files that are further along than the checkpoint it resumed.
What a file says about itself can only make that file replaceable; no path read from a
file decides what else is written or deleted.
"""

from __future__ import annotations

import fnmatch
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
    recorded: bool = False  # the path was read from the resumed checkpoint, not given now

    @property
    def is_template(self) -> bool:
        return bool(_FIELD.search(self.path))


@dataclass(frozen=True)
class Resumed:
    """What a resumed run started from: the checkpoint, its step, and whether the resumed
    run changed settings or callbacks (a branch, which may not replace files ahead of it)."""

    path: Path
    step: int
    branch: bool
    end_step: int  # where the resumed run would end, at the most
    trusted: bool  # charseq wrote the checkpoint here, unedited (charseq.trust)


def check_outputs(outputs: Iterable[Output], run_id: str, inputs: Iterable[Path], resumed: Resumed | None = None,
                  roots: Iterable[str] = (), force: bool = False) -> None:
    """Refuse, in one line, any output the run may not write; see the module's docstring.
    `inputs` are never written; the checkpoint a resumed run was read from only by the
    run's checkpoints; `roots` are the directories and glob patterns the corpus reads."""
    outputs = list(outputs)
    inputs = [Path(p) for p in inputs]
    for output in outputs:
        _check_place(output)
    fixed = [o for o in outputs if not o.is_template]
    for i, first in enumerate(fixed):
        for second in fixed[i + 1 :]:
            if _same(Path(first.path), Path(second.path)):
                raise UsageError(f"{first.what} and {second.what} name the same file {shown(first.path)!r}; give each its "
                                 "own")
    for template in (o for o in outputs if o.is_template):
        for other in fixed:
            if fnmatch.fnmatchcase(other.path, _FIELD.sub("*", glob.escape(template.path))):
                raise UsageError(f"{template.what} {shown(template.path)!r} could write over {other.what} "
                                 f"{shown(other.path)!r}; give them names that cannot meet")
    for output in outputs:
        _check_not_in_corpus(output, roots)
        sources = inputs + ([resumed.path] if resumed is not None and output.kind != CHECKPOINT else [])
        if output.is_template:
            _check_template(output, run_id, sources, force, resumed)
        else:
            _check_file(output, run_id, sources, force, resumed)


SYSTEM_DIRECTORIES = ("/dev", "/proc", "/sys")


def _check_place(output: Output) -> None:
    """A name that can hold a file: not a directory's (a trailing slash), no NUL, and not in
    the kernel's directories, where a "file" is a device or a window on a process."""
    if "\0" in output.path:
        raise UsageError(f"{output.what} {output.path!r} holds a NUL character")
    if output.path.endswith(os.sep) or output.path.endswith(os.sep + "."):
        raise UsageError(f"{output.what} {shown(output.path) + os.sep!r} names a directory; give a file name")
    for place in {os.path.normpath(output.path), os.path.realpath(output.path)}:
        for root in SYSTEM_DIRECTORIES:
            if place == root or place.startswith(root + os.sep):
                raise UsageError(f"{output.what} {shown(output.path)!r} lies in {root}, which holds devices and "
                                 "processes, not files")
    if output.is_template:
        _check_template_fields(output)


_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?#?0?\d{0,3}(?:\.\d{1,2})?[bdeEfFgGnoxX%]?$")


def _check_template_fields(output: Output) -> None:
    """Template fields are plain names with short format specs: `{epoch:03d}`, `{val_loss:.3f}`.
    No conversions, attributes or indexes (which could make `..` or absurd widths), and every
    name a file system can hold once formatted."""
    import string

    try:
        parsed = list(string.Formatter().parse(output.path))
    except ValueError as exc:
        raise UsageError(f"{output.what} {shown(output.path)!r} is malformed: {exc}") from None
    if ".." in Path(output.path[output.path.find("{"):]).parts:
        raise UsageError(f"{output.what} {shown(output.path)!r} climbs out of a directory after a field ('..'); "
                         "give the directory before the fields")
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if conversion or not field.isidentifier() or not _SPEC.match(spec or ""):
            raise UsageError(f"{output.what} {shown(output.path)!r}: {{{field}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain field; use a name with a short format "
                             "such as {epoch:03d} or {val_loss:.3f}")
    try:
        example = output.path.format_map(_StandIn())
    except (ValueError, TypeError):
        return  # the callback says what is wrong with its template
    if any(len(os.fsencode(part)) > 255 for part in Path(example).parts) or len(os.fsencode(example)) > 4000 or \
            ".." in Path(example).parts:
        raise UsageError(f"{output.what} {shown(output.path)!r} makes names a file system cannot hold")


class _StandIn(dict):
    def __missing__(self, key: str) -> int:
        return 1


def _check_not_in_corpus(output: Output, roots: Iterable[str]) -> None:
    """An output inside a directory the corpus reads, or matching its glob, would be read
    as part of the text when the run is resumed."""
    path = os.path.realpath(output.path) if not output.is_template else output.path
    pattern = _FIELD.sub("*", glob.escape(output.path))
    for root in roots:
        if any(ch in root for ch in "*?["):
            hit = fnmatch.fnmatchcase(output.path, root) or (output.is_template and fnmatch.fnmatchcase(pattern, root))
        else:
            base = os.path.realpath(root)
            hit = os.path.commonpath([base, os.path.realpath(os.path.dirname(path)) if output.is_template
                                      else path]) == base
        if hit:
            raise UsageError(f"{output.what} {shown(output.path)!r} lies where the corpus is read from "
                             f"({shown(root)!r}): a resumed run would read it as text; write it elsewhere")


def _check_file(output: Output, run_id: str, inputs: list[Path], force: bool, resumed: Resumed | None) -> None:
    path = Path(output.path)
    kind = kind_of(path)
    if kind is not None:
        raise UsageError(f"{output.what} {shown(output.path)!r} is {kind}; give a file name")
    _check_directory(output, path.parent, create=False)
    for source in inputs:
        if _same(path, source):
            raise UsageError(f"{output.what} {shown(output.path)!r} is one of the run's inputs; writing it would destroy it")
    if path.exists() and not force:
        _check_recorded(output, path, resumed)
        if not _own(path, output.kind, run_id):
            raise UsageError(f"{output.what} {shown(output.path)!r} {_describe(path, output.kind)}; give another path, "
                             "or --force to replace it")
        _check_not_ahead(output, path, resumed)


def _check_template(output: Output, run_id: str, inputs: list[Path], force: bool, resumed: Resumed | None) -> None:
    fixed_part = output.path[: _FIELD.search(output.path).start()]
    try:  # a name too long for the file system fails now, not at an epoch's end
        example = _FIELD.sub("1", output.path)
        too_long = [part for part in Path(example).parts if len(os.fsencode(part)) > 255]
    except ValueError:
        too_long = []
    if too_long or len(os.fsencode(output.path)) > 4000:
        raise UsageError(f"{output.what} {shown(output.path)!r} makes file names too long for the file system")
    _check_directory(output, Path(fixed_part if fixed_part.endswith(os.sep) else os.path.dirname(fixed_part)),
                     create=True)
    pattern = _FIELD.sub("*", glob.escape(output.path))
    for match in sorted(_glob_all(pattern)):
        path = Path(match)
        if any(_same(path, source) for source in inputs):
            raise UsageError(f"{output.what} {shown(output.path)!r} could write over {shown(match)!r}, one of the run's inputs")
        if not force and path.is_file():
            _check_recorded(output, path, resumed)
            if not _own(path, output.kind, run_id):
                raise UsageError(f"{output.what} {shown(output.path)!r} could write over {shown(match)!r}, which "
                                 f"{_describe(path, output.kind)}; choose another name, or --force to allow it")
            _check_not_ahead(output, path, resumed)


def _check_recorded(output: Output, path: Path, resumed: Resumed | None) -> None:
    """A path read from a checkpoint charseq did not write here may not replace a file."""
    if resumed is None or resumed.trusted or not output.recorded or _same(path, resumed.path):
        return
    raise UsageError(f"{output.what} {shown(output.path)!r}: {shown(resumed.path)!r} was not written by charseq here (or "
                     f"was edited), so the paths it records may not replace files, and {shown(path)!r} exists; give "
                     "another path (--out, or --drop-callback for the callback that writes it), or --force")


def _check_not_ahead(output: Output, path: Path, resumed: Resumed | None) -> None:
    """A resumed run may not replace the run's files that are further along than it started:
    a branch (other settings or callbacks) would put other work there, and an unchanged
    run that ends before them would put back an earlier state."""
    if resumed is None:
        return
    step = step_of(path, output.kind)
    if step > resumed.step and (resumed.branch or (output.kind == CHECKPOINT and step > resumed.end_step)):
        why = "this resumed run changes the run" if resumed.branch else f"this run ends at step {resumed.end_step:,}"
        raise UsageError(f"{output.what} {shown(output.path)!r}: {shown(path)!r} holds this run further along (step "
                         f"{step:,}) than {shown(resumed.path)!r} (step {resumed.step:,}), and {why}, so it would "
                         "replace that work; write elsewhere (another --out, or --drop-callback for the callback that "
                         "writes it), or --force")


def step_of(path: Path, kind: str) -> int:
    """How far along the run's file at `path` is: a checkpoint's step, a metrics log's last."""
    if kind == CHECKPOINT:
        from charseq.checkpoint import identity_of

        return identity_of(path)[1]
    if kind == METRICS:
        try:
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return int(json.loads(lines[-1])["step"]) if lines else -1
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return -1
    return -1


def _glob_all(pattern: str) -> list[str]:
    """glob, hidden files included (Python 3.11 can say so; before, `*` skips them)."""
    try:
        return glob.glob(pattern, include_hidden=True)  # type: ignore[call-arg]
    except TypeError:
        return glob.glob(pattern)


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


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (see _same)."""
    return _same(Path(first), Path(second))


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
    # A plugin's file: its callback decides what to do with it, but it is never one of
    # charseq's checkpoints or metrics logs that belongs to another run.
    return _own(path, CHECKPOINT, run_id) if _is_checkpoint(path) else (
        _own(path, METRICS, run_id) if _is_metrics(path) else True)


def _is_checkpoint(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return "metadata.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _is_metrics(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            first = json.loads(f.readline(1 << 20))
        return isinstance(first, dict) and "step" in first and "loss" in first
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def _describe(path: Path, kind: str) -> str:
    if kind == CHECKPOINT:
        from charseq.checkpoint import run_id_of

        if run_id_of(path) is not None:
            return f"holds a checkpoint of another run (to continue that run: charseq train --resume {shown(path)})"
    return "already exists and is not this run's"
