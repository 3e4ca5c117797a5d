"""A training run: one description, one object, driven alike by the CLI and the Python API.

``RunSpec`` describes a run completely: the corpus (as asked for, as found again from any
directory, and a fingerprint of its content), the model, the settings, the callbacks in
order with their options, and where the checkpoint goes. Every checkpoint a run writes
carries it, under the checksum, so ``Run.resume(path)`` rebuilds the same run: the same
callbacks, the same outputs, the same data, exactly where it stopped.

``Run`` owns what can go wrong around training: outputs are checked before the first step
(outputs.py); Ctrl-C saves and returns; a callback that raises gets the run saved first;
a save that fails keeps the last file whole and saves the run somewhere that works.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, cast, overload

import numpy as np

from charseq.checkpoints import format as checkpoints
from charseq.training import budget, outputs
from charseq.training.advice import worse_than_guessing
from charseq.training.callbacks import CallbackError, CallbackList
from charseq.runs.settings import DEFAULT_MODEL, TrainConfig, format_duration
from charseq.data.corpus import Corpus
from charseq.decoding.closing import ClosingSample, closing_sample, default_length
from charseq.errors import CharseqError, CharseqWarning, Placeholder, SaveError, UsageError, counted, label, resuming, setting
from charseq.files import shown
from charseq.training.interrupt import Aborted, exit_code, stop_on_signals
from charseq.data.corpora import get_corpus
from charseq.hooks.registry import get_registry
from charseq.models.build import build_model, model_choice, model_defaults, model_label, model_spec
from charseq.runs.spec import CallbackRef, RunSpec
from charseq.training.choices import absolute, callback_ref, listed, output_options
from charseq.training.policy import WritePolicy
from charseq.training.resuming import (branched, check_same_model, forget_dropped, read_resumable, resumed_callbacks,
                                       resumed_config, resumed_corpus, untrusted_writers)
from charseq.training.trainer import Trainer, check_memory, check_window

@dataclass
class RunResult:
    """How fit() ended: ``status`` is "finished" (its epochs, or its time limit, ended it),
    "stopped" (a callback ended it early),
    "interrupted" (Ctrl-C or SIGTERM: saved, resumable) or "complete" (a resumed run that
    had nothing left to do; nothing written)."""

    status: str
    epoch: int
    step: int
    metrics: dict[str, Any]  # of the weights saved
    saved: Path | None
    message: str  # what to tell the user, one line
    exit_code: int = 0
    stopped_by: str | None = None
    # A Ctrl-C or signal (its number) that came once the run had ended, while it saved: too
    # late to interrupt it, but one who runs one run after another (a sweep) should stop.
    stop_asked: int | None = None


class RunFailed(CharseqError):
    """Training stopped on an error; the message says whether and where the run was saved."""

    def __init__(self, message: str, exit_code: int = 1, saved: Path | None = None):
        super().__init__(message)
        self.exit_code, self.saved = exit_code, saved


class Run:
    """One training run, ready to fit: built from a RunSpec, everything checked.

    Use ``Run.start(...)`` for a new run and ``Run.resume(path, ...)`` to continue one.
    ``extra_callbacks`` are objects that take part but are not recorded (a progress bar);
    a resumed run does not have them unless they are given again.
    """

    def __init__(self, spec: RunSpec, corpus: Corpus, *, force: bool = False, extra_callbacks: Iterable[object] = (),
                 resume_from: checkpoints.Checkpoint | None = None, resumed_path: Path | None = None,
                 out_given: bool = True, added: Sequence[CallbackRef] = (), branch: bool = False):
        self.spec, self.corpus, self.force = spec, corpus, force
        self.resumed_path = resumed_path
        self._out_given = out_given
        self.lineage = outputs.Lineage(spec.id, {p["id"]: p["step"] for p in reversed(spec.parents)})
        self._fitted = False
        self._aborted = False
        config = spec.config
        model_name, model_options = spec.model["name"], dict(spec.model.get("options", {}))
        # Built first without initial values (no memory is touched), so that a run too large
        # for the machine is refused before anything is drawn.
        self.model = build_model(model_name, model_options, len(corpus.vocab), config.hidden_size, seed=None)
        longest = int(np.diff(corpus.item_starts).max()) if corpus.item_starts is not None else None
        check_window(config, self.model, corpus)
        check_memory(config, self.model, longest)
        if resume_from is None:
            self.model = build_model(model_name, model_options, len(corpus.vocab), config.hidden_size,
                                     seed=config.seed)
        if resume_from is not None and (resume_from.model.name != model_name
                                        or resume_from.model.options() != self.model.options()
                                        or resume_from.model.hidden_size != config.hidden_size
                                        or resume_from.vocab != corpus.vocab):
            saved = resume_from.model
            raise UsageError(f"the checkpoint's model ({model_spec(saved.name, saved.options())}, H={saved.hidden_size}, "
                             f"{len(resume_from.vocab)} symbols) is not the one its run describes "
                             f"({model_spec(model_name, model_options)}, H={config.hidden_size}, {len(corpus.vocab)} "
                             "symbols); the checkpoint is damaged")
        resumed = resume_from is not None
        callbacks, self._keys, run_outputs = _callbacks_and_outputs(spec, extra_callbacks, resumed, out_given, added,
                                                                    branch)
        self.trainer = Trainer(self.model, corpus, config, callbacks, run=spec.to_dict(), out=Path(spec.out),
                               saver=lambda path: self._save(path, periodic=True), force=force)
        self._lost_states: list[CallbackError] = []
        self._out_refused: SaveError | None = None  # why `out` did not take the run, when it did not
        self._resumed = resume_from
        if resume_from is not None:
            self.trainer.restore(resume_from)
        resumed_at = None
        if resume_from is not None and resumed_path is not None:
            assert resume_from.training is not None  # Run.resume takes only a resumable checkpoint
            end = self.trainer.end_step  # None: unbounded epochs, before a time limit's plan
            end_step = max(self.trainer.step, end if end is not None else 1 << 62)
            resumed_at = outputs.Resumed(resumed_path, resume_from.training["step"], end_step, resume_from.checksum)
            if self.complete:  # nothing will be trained: at most, the file is saved under the --out given
                run_outputs = run_outputs[:1] if out_given else []
        self.policy = WritePolicy(spec.id, run_outputs, self.lineage, [Path(f) for f in corpus.files], corpus.roots,
                                  force, trusted=resume_from is None or resume_from.trusted,
                                  out=Path(spec.out) if out_given else None, resumed=resumed_at)
        self.check_outputs()

    def check_outputs(self) -> None:
        """Refuse, before training, whatever the run may not write (outputs.py); fit() asks
        again, since files may have come and gone since the run was made."""
        self.policy.check()

    # -- making one ----------------------------------------------------------------------

    @classmethod
    def start(cls, corpus: str | Corpus, *, model: str | None = None, model_options: dict[str, Any] | None = None,
              out: str | os.PathLike | None = None,
              callbacks: Sequence[str | CallbackRef | tuple[str, dict[str, Any]]] = (),
              corpus_options: dict[str, Any] | None = None, force: bool = False,
              extra_callbacks: Iterable[object] = (), **settings: Any) -> Run:
        """A new run on `corpus` (``NAME[:ARG]``, or a Corpus) with `settings` (TrainConfig
        fields; the model's suggestions, then the corpus's, then the defaults fill the rest). `model` is a
        registered model, ``"lstm:layers=2"`` (default: the corpus's suggestion, else
        DEFAULT_MODEL). `callbacks` are registered callbacks: ``"early-stopping:patience=3"``
        or ``("checkpoint", {"every": 5})``. An existing file at `out` (default
        ``CORPUS.npz``) is refused unless `force`."""
        corpus_options = dict(corpus_options or {})
        if isinstance(corpus, Corpus):
            loaded, spec_text, source = corpus, corpus.spec or corpus.name, corpus.source
            corpus_options = dict(corpus.spec_options) or corpus_options
        else:
            loaded = get_corpus(corpus, **corpus_options)
            spec_text, source, corpus_options = corpus, loaded.source, loaded.spec_options
        if model is None:
            suggested = loaded.defaults.get("model", DEFAULT_MODEL)
            model = suggested if isinstance(suggested, str) else DEFAULT_MODEL
        model_name, effective = model_choice(model, model_options)
        suggested = model_defaults(model_name)
        unknown = sorted(set(suggested) - {f.name for f in fields(TrainConfig)})
        if unknown:
            raise CharseqError(f"{model_label(model_name)}: its training_defaults name {unknown[0]!r}, which is not a "
                               f"training setting")
        config = TrainConfig.for_corpus(loaded, suggested, **settings)
        if settings.get("seq_len") is None and loaded.item_starts is None:
            # A model that reads at most N characters at once (a transformer's context) trains
            # on windows of N: a shorter window leaves its later positions untrained.
            window = getattr(build_model(model_name, effective, len(loaded.vocab), config.hidden_size, seed=None),
                             "max_window", None)
            if window is not None:
                config = replace(config, seq_len=int(window))
        spec = RunSpec(corpus=spec_text, config=config, model={"name": model_name, "options": effective}, out=absolute(f"{loaded.name}.npz" if out is None else out),
                       callbacks=[callback_ref(c) for c in listed(callbacks)], corpus_source=source,
                       corpus_options=dict(corpus_options), fingerprint=loaded.fingerprint, characters=len(loaded))
        return cls(spec, loaded, force=force, extra_callbacks=extra_callbacks)

    @classmethod
    def resume(cls, path: str | os.PathLike, *, out: str | os.PathLike | None = None, corpus: str | Corpus | None = None,
               corpus_options: dict[str, Any] | None = None, model: str | None = None,
               callbacks: Sequence[str | CallbackRef | tuple[str, dict[str, Any]]] = (),
               drop_callbacks: Sequence[str] = (), force: bool = False, extra_callbacks: Iterable[object] = (),
               **settings: Any) -> Run:
        """Continue the run a checkpoint was saved from, exactly. Only `epochs` (not below the
        epochs done), `eval_every`, `out`, `corpus` (the same text, moved) and the callbacks
        may change: `drop_callbacks` names callbacks to leave out, `callbacks` adds some (one
        identical to a callback the run has is already there). `model`, when given, must be
        the run's own (a model cannot change part way through a run)."""
        path = Path(path)
        saved, spec = read_resumable(path, corpus_given=corpus is not None)
        assert saved.training is not None  # (resumable: it has a run and its training state)
        config = resumed_config(spec.config, settings, saved.training)
        if model is not None:
            check_same_model(model, spec)
        loaded = resumed_corpus(spec, corpus, dict(corpus_options or {}))
        added = [callback_ref(c) for c in listed(callbacks)]
        drop_names = listed(drop_callbacks)
        if not saved.trusted:
            drop_names = [*drop_names, *untrusted_writers(path, spec, added, drop_names, out)]
        refs, dropped = resumed_callbacks(spec.callbacks, added, drop_names)
        fresh = [ref for ref in added if ref not in spec.callbacks]  # given now: their files are not the run's yet
        extra_callbacks = list(extra_callbacks)
        forget_dropped(saved, dropped, extras={f"_{type(c).__name__}" for c in extra_callbacks})
        spec, branch = branched(spec, saved, config, refs, drop_names)
        spec = replace(spec, config=config, callbacks=refs, out=absolute(out) if out is not None else spec.out,
                       corpus=(loaded.spec or spec.corpus) if corpus is not None else spec.corpus,
                       corpus_source=loaded.source if corpus is not None else spec.corpus_source)
        return cls(spec, loaded, force=force, extra_callbacks=extra_callbacks, resume_from=saved, resumed_path=path,
                   out_given=out is not None, added=fresh, branch=branch)

    # -- training ------------------------------------------------------------------------

    @property
    def config(self) -> TrainConfig:
        return self.spec.config

    @property
    def out(self) -> Path:
        return Path(self.spec.out)

    @property
    def recorded_threads(self) -> int | None:
        """The BLAS threads a resumed run trained with (None for a new run, or one recorded
        before charseq kept them): with as many, it goes on exactly, wrap fit() in
        ``charseq.blas.limited(run.recorded_threads)``."""
        return self.trainer.recorded_threads

    @property
    def complete(self) -> bool:
        """A resumed run that has nothing left to do: it ended, and neither more epochs nor a
        dropped stopping callback give it more (nor anything, once its time limit ended it)."""
        trainer, epochs = self.trainer, self.config.epochs
        return self._resumed is not None and trainer.ended and (bool(epochs) and trainer.epoch >= epochs
                                                                or trainer.stop_training or trainer.time_up)

    def sample(self, length: int | None = None) -> ClosingSample:
        """What the model makes of its corpus now, at temperature 1 with the run's seed: a
        continuation of the corpus's opening, or new items (`length` characters at most;
        default: 20 for a corpus of random windows, else 200)."""
        length = default_length(self.corpus) if length is None else length
        return closing_sample(self.model, self.corpus, length, self.config.seed, self.config.seq_len)

    def fit(self) -> RunResult:
        """Train to the end and save `out`. Ctrl-C or SIGTERM (in the main thread) stops at the
        next step, saves, and returns status "interrupted"; a second one raises Aborted. One
        that comes once the run has ended (as it saves) interrupts nothing: ``stop_asked`` says so.
        A callback that raises gets the run saved first (RunFailed says where)."""
        trainer = self.trainer
        if self._aborted:
            raise UsageError("this Run was aborted part way through a step, so its state in memory is not a state of "
                             f"the run; continue from its last checkpoint: Run.resume({shown(self.out)!r})")
        if self.complete:
            return self._complete()
        trainer.interrupted = None  # an interrupted Run may be fitted again, in the same process
        self.check_outputs()
        # From here on the run has written (or may have written) its files: fitted again, they are its own.
        self.policy.began()
        first_step = trainer.step
        try:
            with stop_on_signals(trainer):
                try:
                    trainer.fit()
                except CallbackError as exc:
                    self._fail_after_callback(exc, first_step)
                except SaveError as exc:
                    self._fail_after_save_error(exc)
                # A signal during the save below ends nothing early; one that came once the run
                # had ended (at its last epoch's end) interrupted nothing.
                interrupted = None if trainer.ended else trainer.interrupted
                saved, note = self._save_interrupted() if interrupted is not None else (self._save_at_end(), "")
            stop_asked = trainer.interrupted if interrupted is None else None  # (its handler is gone now)
        except Aborted as exc:
            self._aborted = True
            kept = f"; {shown(self.spec.out)} keeps its last whole checkpoint" if self.out.exists() else ", without saving"
            raise Aborted(exc.signum, f"aborted at step {trainer.step:,}{kept}") from None
        self._fitted = True
        if self._lost_states:
            lost = self._lost_states[0]
            ref = self._keys.get(lost.key or "")
            raise RunFailed(f"{lost}; saved {shown(saved)} at step {trainer.step:,} without that callback's state; "
                            f"continue with: {self._continuation(saved, [ref.name] if ref else [])}", lost.exit_code,
                            saved)
        result = replace(self._result(interrupted, saved, note), stop_asked=stop_asked)
        advice = worse_than_guessing(result.metrics, len(self.corpus.vocab), self.config)
        if advice is not None and result.status != "interrupted":
            warnings.warn(CharseqWarning(advice), stacklevel=2)
        return result

    @overload
    def _save(self, path: Path, checkpoint: checkpoints.Checkpoint | None = None,
              periodic: Literal[False] = False) -> Path: ...
    @overload
    def _save(self, path: Path, checkpoint: checkpoints.Checkpoint | None = None, *,
              periodic: bool) -> Path | None: ...

    def _save(self, path: Path, checkpoint: checkpoints.Checkpoint | None = None, periodic: bool = False
              ) -> Path | None:
        """Save the run to `path`, where its WritePolicy allows: a periodic save (a callback's)
        that would replace a later state of the run is skipped, and returns None."""
        checkpoint = checkpoint or self._checkpoint()
        assert checkpoint.training is not None  # a run's checkpoint carries its training state
        target = self.policy.target(path, checkpoint.training["step"], periodic)
        if target is None:
            return None
        checkpoints.save(target, checkpoint)
        self.policy.wrote(target, checkpoint.training["step"])
        return target

    def _checkpoint(self) -> checkpoints.Checkpoint:
        """The run as it stands. A callback whose state cannot be had (its state_dict raises,
        or returns what a checkpoint cannot hold) is left out of it, and fit() says so."""
        while True:
            try:
                return self.trainer.to_checkpoint()
            except CallbackError as exc:
                if exc.hook != "state_dict" or exc.key is None or exc.key in self.trainer.unsaved_state:
                    raise
                self.trainer.unsaved_state.add(exc.key)
                self._lost_states.append(exc)

    def _save_somewhere(self, failed: SaveError | None = None) -> Path:
        """Save to `out`, or, when that fails, to a new file in the working directory, the home
        directory or the temporary directory. SaveError when nothing works."""
        tried = [failed] if failed is not None else []
        self._out_refused = failed
        if failed is None or Path(os.path.abspath(str(failed.path))) != self.out:
            try:
                return self._save(self.out)
            except SaveError as exc:
                tried.append(exc)
                self._out_refused = exc
        name = f"{self.out.stem}.rescued-step{self.trainer.step}.npz"
        for directory in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
            candidate = directory / name
            if os.path.lexists(candidate):  # anything there, a planted link included
                continue
            try:
                return self._save(candidate)
            except SaveError as exc:
                tried.append(exc)
            except OSError:
                continue
        first = tried[0]
        raise SaveError(first.path, f"{first.reason}; nor could the run be saved anywhere else "
                                    f"({'; '.join(str(e) for e in tried[1:]) or 'no other place'})")

    def _save_interrupted(self) -> tuple[Path, str]:
        """Save an interrupted run to `out`, or, when `out` may not take it (it holds the run
        further along: an earlier file was resumed), somewhere else; says why."""
        try:
            return self._save(self.out), ""
        except SaveError as exc:
            try:
                return self._save_somewhere(exc), f"{shown(self.out)} was kept ({exc.reason}); "
            except SaveError as last:
                raise RunFailed(f"interrupted, and {last}", 1) from None

    def _save_at_end(self) -> Path:
        try:
            return self._save(self.out)
        except SaveError as exc:
            self._fail_after_save_error(exc, ended=True)
        raise AssertionError("unreachable")

    def _fail_after_save_error(self, exc: SaveError, ended: bool = False) -> None:
        """Save the run somewhere else and say how to go on: into `out` again once it can take
        the file (a disk with room), or, when `out` holds other work now (another run's, which
        a save may never replace), in the file it was saved to; an ended run needs nothing."""
        kept = f"{shown(self.spec.out)} keeps its last whole checkpoint" if self.out.exists() else "nothing was saved"
        try:
            rescued = self._save_somewhere(exc)
        except SaveError as last:
            raise RunFailed(f"{last}; {kept}", 1) from None
        if rescued == self.out:
            raise RunFailed(f"{exc}; saved the run to {shown(self.spec.out)} at step {self.trainer.step:,}; continue "
                            f"with: {self._continuation(rescued)}", 1, rescued) from None
        if ended and exc.os_error is None:  # nothing left to do, and `out` will not take it
            raise RunFailed(f"{exc}; saved the ended run to {shown(rescued)} instead (to train it further: "
                            f"{self._continuation(rescued, epochs=Placeholder('N'))})", 1, rescued) from None
        raise RunFailed(f"{exc}; saved the run to {shown(rescued)} instead; continue with: "
                        f"{self._continuation(rescued)}", 1, rescued) from None

    def _continuation(self, saved: Path, drop: Sequence[str] = (), epochs: Any = None) -> str:
        """How to go on with the run saved at `saved` (without the callbacks `drop`): into `out`
        again when only the disk kept it from `out` (room there, later), else in `saved`
        itself, since what the rules refused (another run's file there) stays refused; and a
        metrics log that another run took since (two runs started alike) moved beside `saved`."""
        out = None
        if saved != self.out:
            refused = self._out_refused
            out = saved if refused is not None and refused.os_error is None else Path(self.spec.out)
        drops, added = list(drop), []
        for output in self.policy.outputs:
            path = Path(output.path)
            if output.callback == "metrics" and path.is_file() and not outputs.own(path, outputs.METRICS, self.lineage):
                drops.append("metrics")
                added.append(("metrics", {"path": shown(saved.with_name(f"{saved.stem}.jsonl"))}))
        return resuming(shown(saved), out=None if out is None else shown(out), drop_callbacks=drops, callbacks=added,
                        epochs=epochs)

    def _fail_after_callback(self, exc: CallbackError, first_step: int) -> None:
        """A callback raised between two steps: save the run (unless it had not begun), and
        say how to continue without that callback."""
        ref = self._keys.get(exc.key or "")
        if self.trainer.step == first_step:
            raise RunFailed(str(exc) + ("; nothing was trained" if first_step == 0 else "; nothing new was trained"),
                            exc.exit_code) from exc.error
        try:
            saved = self._save_somewhere()
        except SaveError as failed:
            raise RunFailed(f"{exc}; and the run could not be saved: {failed}", exc.exit_code) from exc.error
        raise RunFailed(f"{exc}; saved {shown(saved)} at step {self.trainer.step:,}; continue with: "
                        f"{self._continuation(saved, [ref.name] if ref else [])}", exc.exit_code, saved) from exc.error

    # -- reporting -----------------------------------------------------------------------

    def _result(self, interrupted: int | None, saved: Path, note: str = "") -> RunResult:
        trainer = self.trainer
        metrics = trainer.metrics
        if interrupted is not None:
            where = (f"after the last step of epoch {trainer.epoch + 1}, before its evaluation"
                     if trainer.step_in_epoch == trainer.steps_per_epoch
                     else f"epoch {trainer.epoch + 1}, step {trainer.step_in_epoch} of {trainer.steps_per_epoch}")
            message = (f"interrupted at step {trainer.step:,} ({where}); {note}saved {shown(saved)}; continue with: "
                       f"{self._continuation(saved)}")
            return RunResult("interrupted", trainer.epoch, trainer.step, metrics, saved, message,
                             exit_code(interrupted))
        losses = _losses(metrics)
        if trainer.stopped_by is not None:
            which = self._keys.get(trainer.stopped_by)
            who = which.name if which is not None else trainer.stopped_by
            weights = (f" with the weights of epoch {metrics.get('epoch')}" if trainer.weights_from is not None
                       else "")
            message = f"stopped early at epoch {trainer.epoch} by {who}; saved {shown(saved)}{weights}, {losses}"
            return RunResult("stopped", trainer.epoch, trainer.step, metrics, saved, message, 0, who)
        if trainer.time_up:
            return RunResult("finished", trainer.epoch, trainer.step, metrics, saved,
                             f"saved {shown(saved)}: {self._time_limit_ended()}, {losses}")
        epochs = f"{trainer.epoch} epoch{'s' if trainer.epoch != 1 else ''}"
        return RunResult("finished", trainer.epoch, trainer.step, metrics, saved,
                         f"saved {shown(saved)} after {epochs}, {losses}")

    def _time_limit_ended(self) -> str:
        """How the time limit ended the run: when, after how much training, how far."""
        trainer, limit = self.trainer, format_duration(self.config.time_limit)
        planned = trainer.planned_steps
        after = (f"after {format_duration(trainer.wall_time)} of training, at step {trainer.step:,} "
                 f"({trainer.step / trainer.steps_per_epoch:,.1f} epochs)")
        if planned is None:
            return (f"its time limit ({limit}) cut it short, before it could plan its steps, {after}: its steps ran "
                    "too slowly for their pace to be measured within its budget")
        if trainer.step < planned:
            return (f"its time limit ({limit}) cut it short, before the step it planned ({planned:,}), {after}: its "
                    "steps ran slower than the pace it measured")
        if self.config.time_limit - trainer.wall_time > budget.overrun_allowed(self.config.time_limit):
            return (f"its time limit ({limit}) ended it {after}, the step it planned: early, its steps faster than "
                    "while it measured its pace")
        return f"its time limit ({limit}) ended it {after}"

    def _complete(self) -> RunResult:
        """Nothing to train. Written only when asked for elsewhere (--out), as when a run
        saved somewhere else because its own place was full is put where it belongs."""
        trainer = self.trainer
        saved = None
        if self._out_given and self.resumed_path is not None and not outputs.same_file(self.out, self.resumed_path) \
                and os.path.realpath(self.out) != os.path.realpath(self.resumed_path):
            # The file as it was read (the callbacks' state included, which they have not taken
            # up: no training began), or, after a fit() of this Run, the run as it stands.
            resumed = cast(checkpoints.Checkpoint, self._resumed)  # (complete: the run was resumed)
            source = self.trainer.to_checkpoint() if self._fitted else replace(resumed, run=self.spec.to_dict())
            saved = self._save(self.out, source)
        if trainer.stop_training:
            which = self._keys.get(trainer.stopped_by or "")
            who = which.name if which is not None else trainer.stopped_by
            message = f"the run stopped early at epoch {trainer.epoch} ({who}); to train on, leave it out: " + (
                setting("drop_callbacks", [who]) if which is not None else "resume it without that callback")
        elif trainer.time_up:
            message = (f"the run is complete: {self._time_limit_ended()}; a resumed run keeps its time limit, so to "
                       f"train longer, start a run with a longer {setting('time_limit')}")
        else:
            more = self.config.epochs + max(1, self.config.epochs // 2)
            message = (f"the run is complete ({trainer.epoch} of {counted(self.config.epochs, 'epoch')}); to train "
                       f"on, resume it with more epochs: {resuming(str(self.resumed_path or self.out), epochs=more)}")
        written = f"saved it to {shown(saved)}" if saved is not None else "nothing was written"
        return RunResult("complete", trainer.epoch, trainer.step, trainer.metrics, saved, f"{message}; {written}", 0,
                         trainer.stopped_by)


# -- helpers ---------------------------------------------------------------------------------


def _callbacks_and_outputs(spec: RunSpec, extra_callbacks: Iterable[object], resumed: bool, out_given: bool,
                           added: Sequence[CallbackRef], branch: bool
                           ) -> tuple[CallbackList, dict[str, CallbackRef], list[outputs.Output]]:
    """The run's callbacks (the unrecorded extras first), each registered one's recorded
    choice by its state key, and the files the run writes: `out`, and each callback's
    declared output options. A file is `fresh` (not yet the run's own) when it was given
    for this run: a new run's, a callback added on resuming, any plugin file of a branch."""
    registry = get_registry()
    callbacks = CallbackList()
    for callback in extra_callbacks:  # first: a progress bar's epoch line comes before what others print
        kind = type(callback).__name__
        # '_' begins no registered name, so these keys never meet a registered callback's
        callbacks.add(callback, name=f"_{kind}", label=f"callback {kind}")
    keys: dict[str, CallbackRef] = {}
    run_outputs = [outputs.Output(spec.out, label("out"), outputs.CHECKPOINT, fresh=not resumed or out_given)]
    for ref in spec.callbacks:
        if ref.name not in registry.all("callback"):
            raise UsageError(f"the run uses callback {ref.name!r}, which no installed plugin provides; install its "
                             f"plugin, or leave it out: {setting('drop_callbacks', [ref.name])}")
        registered = registry.get("callback", ref.name)
        described = f"callback {ref.name!r} of {registry.describe(registered.plugin)}"
        entry = callbacks.add(registered.build(**ref.options), name=ref.name, label=described)
        keys[entry.key] = ref
        for option, kind in output_options(registered.factory).items():
            if ref.options.get(option) is not None:
                path = str(ref.options[option])
                if not os.path.isabs(path):  # recorded absolute; a relative one was not written by charseq
                    raise UsageError(f"the run's callback {ref.name!r} writes to {path!r}, not an absolute path; "
                                     "the checkpoint is damaged")
                # A plugin's file of a branch is not the branch's yet: the line it came from wrote it.
                run_outputs.append(outputs.Output(path, f"callback {ref.name!r} option {option}", kind,
                                                    template=kind == outputs.CHECKPOINT,
                                                    fresh=not resumed or ref in added or branch,
                                                    callback=ref.name))
    return callbacks, keys, run_outputs


def _losses(metrics: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"

    validation = f", validation {show(metrics['val_loss'])}" if metrics.get("val_loss") is not None else ""
    return f"loss {show(metrics.get('loss'))}{validation} nats/char"
