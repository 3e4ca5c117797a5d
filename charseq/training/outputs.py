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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from charseq.errors import UsageError, resuming, setting
from charseq.files import dangling, kind_of, shown

CHECKPOINT, METRICS, FILE = "checkpoint", "metrics", "file"
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # files.atomic_write's
_FIELD = re.compile(r"\{[^{}]*\}")


class OutputExists(UsageError):
    """A file is where the run (or a command) would write, and it may not replace it unasked:
    `path`; `resumable` when it holds a run of its own that can be continued instead."""

    def __init__(self, path: Path, resumable: bool, message: str):
        super().__init__(message)
        self.path, self.resumable = path, resumable


@dataclass(frozen=True)
class Output:
    """A file a run writes: ``path`` is absolute; with ``template``, its ``{fields}`` are
    filled in each time (a checkpoint callback's path), else braces are plain characters."""

    path: str
    what: str  # for messages: label("out"), "callback 'checkpoint' option path"
    kind: str = FILE  # CHECKPOINT, METRICS or FILE: what makes an existing file the run's own
    template: bool = False
    fresh: bool = True  # given for this run now (a new run's, or a callback added on resuming)
    callback: str | None = None  # the registered callback that writes it (None: the run itself)

    @property
    def is_template(self) -> bool:
        return self.template and bool(_FIELD.search(self.path))


@dataclass(frozen=True)
class Lineage:
    """Whose files a run may replace: its own (by run id), and those of the runs it branched
    from that are not further along than where it left them. Nothing else, --force or not,
    replaces an ancestor's later work: that is another line, which a branch must not undo."""

    run_id: str
    ancestors: Mapping[str, int] = field(default_factory=dict)  # run id -> the step this line left it at

    def allows(self, run_id: str | None, step: int) -> bool:
        if run_id is None:
            return False
        if run_id == self.run_id:
            return True
        return run_id in self.ancestors and step <= self.ancestors[run_id]

    def ahead(self, run_id: str | None, step: int) -> bool:
        """An ancestor's file further along than this line left it."""
        return run_id is not None and run_id in self.ancestors and step > self.ancestors[run_id]


@dataclass(frozen=True)
class Resumed:
    """What a resumed run started from: the checkpoint (and its checksum, to know it is
    still what was read), its step, and where the run would end."""

    path: Path
    step: int
    end_step: int
    checksum: str | None = None

    def is_file(self, path: Path) -> bool:
        """Whether `path` is the checkpoint resumed, holding what was read from it."""
        if not _same(path, self.path):
            return False
        from charseq.checkpoints.format import checksum_of

        return self.checksum is not None and checksum_of(path) == self.checksum


def check_outputs(outputs: Iterable[Output], lineage: Lineage, inputs: Iterable[Path], resumed: Resumed | None = None,
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
    templates = [o for o in outputs if o.is_template]
    for template in templates:
        pattern = _FIELD.sub("*", glob.escape(_resolved(template.path, True)))
        others = fixed + [t for t in templates if t is not template]
        for other in others:
            name = _resolved(other.path.format_map(_StandIn()) if other.is_template else other.path, False)
            if fnmatch.fnmatchcase(name, pattern):
                raise UsageError(f"{template.what} {shown(template.path)!r} could write over {other.what} "
                                 f"{shown(other.path)!r}; give them names that cannot meet")
    for output in outputs:
        _check_not_in_corpus(output, roots)
        sources = inputs + ([resumed.path] if resumed is not None and output.kind != CHECKPOINT else [])
        if output.is_template:
            _check_template(output, lineage, sources, force, resumed)
        else:
            _check_file(output, lineage, sources, force, resumed)


SYSTEM_DIRECTORIES = ("/dev", "/proc", "/sys")


def _check_place(output: Output) -> None:
    """A name that can hold a file: not a directory's (a trailing slash), no NUL, and not in
    the kernel's directories, where a "file" is a device or a window on a process."""
    if "\0" in output.path:
        raise UsageError(f"{output.what} {output.path!r} holds a NUL character")
    if dangling(output.path if not output.is_template else os.path.dirname(output.path[: output.path.find("{")])):
        raise UsageError(f"{output.what} {shown(output.path)!r} (or a directory on its way) is a symlink to a place "
                         "that does not exist; give a real path")
    if output.path.endswith(os.sep) or output.path.endswith(os.sep + "."):
        raise UsageError(f"{output.what} {shown(output.path) + os.sep!r} names a directory; give a file name")
    for place in {os.path.normpath(output.path), os.path.realpath(output.path)}:
        for root in SYSTEM_DIRECTORIES:
            if place == root or place.startswith(root + os.sep):
                raise UsageError(f"{output.what} {shown(output.path)!r} lies in {root}, which holds devices and "
                                 "processes, not files")
    if output.is_template:
        _check_template_fields(output)


# A fill character may be anything a name can hold but a separator or a dot.
_SPEC = re.compile(r"^(?:[^/\\.{}]?[<>=^])?[+\- ]?#?0?\d{0,3}(?:\.\d{1,2})?[bdeEfFgGnoxX%]?$")


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
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion or not name.isidentifier() or not _SPEC.match(spec or ""):
            raise UsageError(f"{output.what} {shown(output.path)!r}: {{{name}{'!' + conversion if conversion else ''}"
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
            hit = _under_glob(output, path, pattern, root)
        else:
            base = os.path.realpath(root)
            hit = os.path.commonpath([base, os.path.realpath(os.path.dirname(path)) if output.is_template
                                      else path]) == base
        if hit:
            raise UsageError(f"{output.what} {shown(output.path)!r} lies where the corpus is read from "
                             f"({shown(root)!r}): a resumed run would read it as text; write it elsewhere")


def _resolved(path: str, template: bool) -> str:
    """A path with its directory's symlinks followed (for a template, those of the directory
    before its first field), so that two names of one place compare equal."""
    if template:
        cut = path.find("{")
        head = os.path.dirname(path[:cut])
        return os.path.join(os.path.realpath(head or "."), path[len(head) + 1 if head else 0:])
    return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))


def _under_glob(output: Output, path: str, pattern: str, root: str) -> bool:
    """Whether a glob corpus would match the output, symlinks followed on both sides: the
    glob's fixed directory and the output are compared where they really are."""
    parts = Path(root).parts
    fixed = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    base, rest = os.path.realpath(os.path.join(*parts[:fixed])), os.path.join(*parts[fixed:])
    candidates = [path, os.path.realpath(os.path.dirname(output.path)) + os.sep + os.path.basename(output.path)]
    if output.is_template:
        candidates = [pattern, os.path.realpath(os.path.dirname(pattern.split("*")[0]) or ".") + os.sep
                      + pattern[len(os.path.dirname(pattern.split("*")[0])) + 1:]]
    for candidate in candidates:
        if fnmatch.fnmatchcase(candidate, root):
            return True
        if candidate.startswith(base + os.sep) and fnmatch.fnmatchcase(candidate[len(base) + 1:], rest):
            return True
    return False


def _check_file(output: Output, lineage: Lineage, inputs: list[Path], force: bool, resumed: Resumed | None) -> None:
    path = Path(output.path)
    kind = kind_of(path)
    if kind is not None:
        raise UsageError(f"{output.what} {shown(output.path)!r} is {kind}; give a file name")
    _check_directory(output, path.parent, create=False)
    for source in inputs:
        if _same(path, source):
            raise UsageError(f"{output.what} {shown(output.path)!r} is one of the run's inputs; writing it would destroy it")
    if path.exists():
        resumed_file = resumed is not None and output.kind == CHECKPOINT and resumed.is_file(path)
        if not resumed_file:  # (the checkpoint resumed, as it was read, is the run's to continue)
            _check_ancestor_ahead(output, path, lineage)
            if not force and not own(path, output.kind, lineage, output.fresh):
                raise OutputExists(path, identity(path, CHECKPOINT)[0] is not None and output.kind != METRICS,
                                   f"{output.what} {shown(output.path)!r} {_describe(path, output.kind, lineage)}; "
                                   f"give another path, or {setting('force', True)} to replace it")
        _check_not_ahead(output, path, resumed, lineage)


def _check_template(output: Output, lineage: Lineage, inputs: list[Path], force: bool, resumed: Resumed | None) -> None:
    first_field = _FIELD.search(output.path)
    assert first_field is not None  # only a template (is_template: it has a field) is checked here
    fixed_part = output.path[: first_field.start()]
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
        if _TEMPORARY.match(path.name):
            continue  # what a killed save left: safe to delete, and never written by name
        if any(_same(path, source) for source in inputs):
            raise UsageError(f"{output.what} {shown(output.path)!r} could write over {shown(match)!r}, one of the run's inputs")
        if path.is_dir():
            raise UsageError(f"{output.what} {shown(output.path)!r} could write over {shown(match)!r}, which is a "
                             "directory; choose another name")
        if path.is_file():
            _check_ancestor_ahead(output, path, lineage)
        if not force and path.is_file():
            if not own(path, output.kind, lineage, output.fresh):
                raise OutputExists(path, False, f"{output.what} {shown(output.path)!r} could write over "
                                   f"{shown(match)!r}, which {_describe(path, output.kind, lineage)}; choose another "
                                   f"name, or {setting('force', True)} to allow it")


def _check_ancestor_ahead(output: Output, path: Path, lineage: Lineage) -> None:
    """A branch never replaces its parents' later work, --force or not."""
    kind = output.kind if output.kind != FILE else (CHECKPOINT if _is_checkpoint(path) else METRICS)
    run_id, step = identity(path, kind)
    if run_id is not None and lineage.ahead(run_id, step):
        option = {CHECKPOINT: f"{setting('out')} (or, for a checkpoint callback, "
                              f"{setting('drop_callbacks', ['checkpoint'])} "
                              f"{setting('callbacks', ['checkpoint:path=NEW'])})",
                  METRICS: f"{setting('drop_callbacks', ['metrics'])} {setting('callbacks', ['metrics:path=NEW'])} "
                           "(or, if those lines are what a crash left after the checkpoint, resume it unchanged first: "
                           "that run keeps them and goes on)"
                  }.get(output.kind, "another path for that callback")
        raise UsageError(f"{output.what} {shown(output.path)!r}: {shown(path)!r} holds the run this one branched from, "
                         f"further along (step {step:,}) than where this run left it (step "
                         f"{lineage.ancestors[run_id]:,}); a branch writes elsewhere: give {option}")


def _check_not_ahead(output: Output, path: Path, resumed: Resumed | None, lineage: Lineage) -> None:
    """A resumed run that retraces its line from an earlier file would end before the
    run's checkpoint there, putting an earlier state over a later one: refused, even with
    --force (which is for files that are not the run's)."""
    if resumed is None or output.kind != CHECKPOINT:
        return
    run_id, step = identity(path, CHECKPOINT)
    if run_id == lineage.run_id and step > resumed.end_step:
        raise UsageError(f"{output.what} {shown(output.path)!r} holds this run further along (step {step:,}) than this "
                         f"run would end (step {resumed.end_step:,}), resumed from {shown(resumed.path)!r}; it would "
                         f"put an earlier state over it: give another {setting('out')}")


def identity(path: Path, kind: str) -> tuple[str | None, int]:
    """The run a file of charseq's says it belongs to, and how far along it is: a
    checkpoint's step, a metrics log's last line's; (None, -1) for anything else."""
    if kind == CHECKPOINT:
        from charseq.checkpoints.format import identity_of

        return identity_of(path)
    if kind == METRICS:
        try:
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            first, last = json.loads(lines[0]), lines[-1]
            try:
                step = int(json.loads(last)["step"])
            except (ValueError, KeyError, TypeError):  # a last line cut short: the one before
                step = int(json.loads(lines[-2])["step"]) if len(lines) > 1 else -1
            run_id = first.get("run") if isinstance(first, dict) else None
            return (run_id if isinstance(run_id, str) else None), step
        except (OSError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, AttributeError):
            return None, -1
    return None, -1


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


def check_new_file(path: str, what: str, *, force: bool = False, inputs: Mapping[Path, str] | None = None,
                   own: Callable[[Path], bool] | None = None, can_force: bool = True) -> Path:
    """Refuse, in one line, a file a command may not write outside a run (an export, a
    picture), by the rules a run's outputs follow: a name that can hold a file (no link to
    nowhere, no directory, device or kernel path), in a directory that exists and takes
    files; never one of `inputs` (path -> what it is, for the message) nor charseq's data (a
    checkpoint or metrics log), `force` or not; and a file already there only when it is
    the command's own (`own`) or `force` allows it (`can_force`: the command may force at
    all). `what` names the setting that gave it."""
    if not path or path.endswith(os.sep) or path.endswith(os.sep + "."):
        raise UsageError(f"{what} {path!r} is not a file name")
    if path == "-":
        raise UsageError(f"{what} - would be standard output, which this command does not write to; give a file name")
    target, name = Path(path), shown(path)
    kind = kind_of(target)
    if kind is not None:
        raise UsageError(f"{name!r} is {kind}; give a file name with {what}")
    output = Output(os.path.abspath(path), what)
    _check_place(output)
    _check_directory(output, target.parent, create=False)
    if not target.exists():
        return target
    for source, described in (inputs or {}).items():
        if _same(target, Path(source)):
            raise UsageError(f"{name!r} is {described}; give another path with {what}")
    if is_charseq_file(target):
        raise UsageError(f"{name!r} holds charseq's data (a checkpoint or metrics); give another path with {what}")
    if not force and not (own is not None and own(target)):
        forcing = f", or {setting('force', True)} to replace it" if can_force else ""
        raise OutputExists(target, False, f"{name!r} already exists; give another path with {what}{forcing}")
    return target


def unfit_target(path: Path, inputs: Iterable[Path], roots: Iterable[str]) -> str | None:
    """Why a checkpoint may not be written at `path` (resolved) at all, whoever asks: a
    plugin's own trainer.save_checkpoint() meets the same rules as --out."""
    output = Output(str(path), "checkpoint")
    try:
        _check_place(output)
        _check_not_in_corpus(output, roots)
    except UsageError as exc:
        return f"no checkpoint may go there ({exc})"
    if any(_same(path, Path(source)) for source in inputs):
        return "it is one of the run's inputs"
    return None


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


def own(path: Path, kind: str, lineage: Lineage, fresh: bool = False) -> bool:
    """Whether the run may replace the file at `path`: an empty file (nothing to lose), or
    one that records the run's line (see Lineage). A plugin's file of its own kind is the
    run's when the callback was part of the run before (a resumed run's); given now, it is
    nobody's to replace."""
    try:
        if path.stat().st_size == 0:
            return True
    except OSError:
        return False
    if kind == FILE:
        kind = CHECKPOINT if _is_checkpoint(path) else METRICS if _is_metrics(path) else FILE
        if kind == FILE or fresh:
            return not fresh
    return lineage.allows(*identity(path, kind))


def is_charseq_file(path: Path) -> bool:
    """A checkpoint or a metrics log: what no picture or plugin file may replace unasked."""
    return _is_checkpoint(path) or _is_metrics(path)


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


def _describe(path: Path, kind: str, lineage: Lineage) -> str:
    run_id, step = identity(path, kind if kind != FILE else CHECKPOINT)
    if run_id is not None and kind != METRICS:
        from charseq.checkpoints.format import parents_of

        if {lineage.run_id, *lineage.ancestors} & set(parents_of(path)):
            return (f"holds a later branch of this run (step {step:,}), other work that this run would replace "
                    f"(to continue that branch: {resuming(shown(path))})")
        return f"holds a checkpoint of another run (to continue that run: {resuming(shown(path))})"
    if run_id is not None:
        return "holds another run's metrics"
    return "already exists and is not this run's"
