"""Where one run may write: one object checks the run's outputs before its first step and
decides, at each save, whether a file may take the run, so that both speak alike.

The rules themselves (what makes a file the run's own, a branch's ancestor, an input) are
in charseq.training.outputs; this object holds what a run knows about its files: its line,
its inputs, what it resumed, what `force` allows, and what this process has written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from charseq import files
from charseq.checkpoints import format as checkpoints
from charseq.errors import SaveError
from charseq.training import outputs as rules


@dataclass
class WritePolicy:
    """The write policy of one run (`run_id`): its `outputs`, checked before training by
    `check()`, and each save's target, checked by `target()`."""

    run_id: str
    outputs: list[rules.Output]
    lineage: rules.Lineage
    inputs: list[Path]
    roots: tuple[str, ...] = ()
    force: bool = False
    trusted: bool = True  # the resumed checkpoint was written here (charseq.trust): its paths may be replaced
    out: Path | None = None  # the run's checkpoint path, when it was given for this run
    resumed: rules.Resumed | None = None
    # Files this process saved, with what it knows of them (size, mtime, inode) and the step
    # it wrote: while a file is unchanged, its step is known without reading it again.
    written: dict[Path, tuple[tuple[int, int, int], int]] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse now whatever the run may not write (charseq.training.outputs.check_outputs)."""
        rules.check_outputs(self.outputs, self.lineage, self.inputs, self.resumed, self.roots, self.force)

    def began(self) -> None:
        """The run has begun writing: from now on its outputs are its own, fitted again or not."""
        self.outputs = [replace(output, fresh=False) for output in self.outputs]

    def target(self, path: Path, step: int, periodic: bool = False) -> Path | None:
        """Where a save of the run at `step` to `path` goes (the real path, links and `..`
        followed), its directory made; a SaveError saying why it may not. A file there is
        replaced only when this process wrote it, when it is of the run's line or `force`
        allows it, and never with an earlier state of the run than it holds: a periodic save
        (a callback's) that would do so is skipped (None)."""
        try:
            if files.dangling(path):  # a planted link to where nothing is yet: never followed
                raise SaveError(files.shown(path),
                                "it (or a directory on its way) is a symlink to a place that does not exist")
            # The place the name leads to, `..` and symlinks followed: what is checked is what is written.
            path = Path(os.path.realpath(path))
            reason = rules.unfit_target(path, self.inputs, self.roots)
            if reason:
                raise SaveError(files.shown(path), reason)
            if path.exists() and path.stat().st_size > 0 and not self._may_replace(path, step, periodic):
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SaveError(files.shown(path), exc.strerror or str(exc), exc) from None
        except ValueError as exc:  # a name no file can have (a NUL in it)
            raise SaveError(files.shown(path), str(exc)) from None
        return path

    def _may_replace(self, path: Path, step: int, periodic: bool) -> bool:
        """Whether the run at `step` may replace the file at `path`: False to skip a periodic
        save; a SaveError when it may not."""
        name = files.shown(path)
        if rules.kind_of(path) is not None:
            raise SaveError(name, "it is not a regular file")
        run_id, held = self.identity(path)
        if run_id == self.run_id and held > step:  # even a file this process wrote
            if periodic:
                return False
            raise SaveError(name, f"it holds this run further along (step {held:,}), which an earlier state must not "
                                  "replace")
        if self.lineage.ahead(run_id, held):  # forced or not
            raise SaveError(name, f"it holds the run this one branched from, further along (step {held:,}), which a "
                                  "branch must not replace")
        if path not in self.written and not self.force:
            resumed = self.resumed is not None and self.resumed.is_file(path)
            typed = self.out is not None and path == Path(os.path.realpath(self.out))
            if not self.trusted and not resumed and not typed:
                raise SaveError(name, "the resumed checkpoint was not written here, so the paths it records may not "
                                      "replace files")
            if not resumed and not self.lineage.allows(run_id, held):
                raise SaveError(name, "it holds a file that is not a checkpoint of this run")
        return True

    def wrote(self, path: Path, step: int) -> None:
        """Note a save this process made (see `written`)."""
        self.written[path] = (_signature(path), step)

    def identity(self, path: Path) -> tuple[str | None, int]:
        """A checkpoint's run id and step: from memory when this process wrote it and it is
        unchanged (a periodic save every epoch would otherwise re-read the run's history)."""
        known = self.written.get(path)
        if known is not None and known[0] == _signature(path):
            return self.run_id, known[1]
        return checkpoints.identity_of(path)


def _signature(path: Path) -> tuple[int, int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns, info.st_ino
