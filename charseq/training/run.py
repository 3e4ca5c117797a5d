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
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast, overload

import numpy as np

from charseq.checkpoints import format as checkpoints
from charseq.training import outputs
from charseq import trust
from charseq.training.callbacks import CallbackError, CallbackList
from charseq.runs.settings import DEFAULT_MODEL, TrainConfig
from charseq.data.corpus import Corpus
from charseq.decoding.closing import ClosingSample, closing_sample, default_length
from charseq.errors import CharseqError, CharseqWarning, Placeholder, SaveError, UsageError, counted, label, resuming, setting
from charseq.files import shown
from charseq.training.interrupt import Aborted, exit_code, stop_on_signals
from charseq.data.corpora import get_corpus
from charseq.hooks.options import format_options, parse_options
from charseq.hooks.registry import get_registry, parse_spec
from charseq.models.build import build_model, model_choice, model_spec
from charseq.runs.spec import RESUME_MAY_CHANGE, CallbackRef, RunSpec, may_change
from charseq.training.policy import WritePolicy
from charseq.training.trainer import Trainer, check_memory

@dataclass
class RunResult:
    """How fit() ended: ``status`` is "finished", "stopped" (a callback ended it early),
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
        registry = get_registry()
        callbacks = CallbackList()
        for callback in extra_callbacks:  # first: a progress bar's epoch line comes before what others print
            kind = type(callback).__name__
            # '_' begins no registered name, so these keys never meet a registered callback's
            callbacks.add(callback, name=f"_{kind}", label=f"callback {kind}")
        self._keys: dict[str, CallbackRef] = {}
        resumed = resume_from is not None
        run_outputs = [outputs.Output(spec.out, label("out"), outputs.CHECKPOINT, fresh=not resumed or out_given)]
        for ref in spec.callbacks:
            if ref.name not in registry.all("callback"):
                raise UsageError(f"the run uses callback {ref.name!r}, which no installed plugin provides; install its "
                                 f"plugin, or leave it out: {setting('drop_callbacks', [ref.name])}")
            registered = registry.get("callback", ref.name)
            described = f"callback {ref.name!r} of {registry.describe(registered.plugin)}"
            entry = callbacks.add(registered.build(**ref.options), name=ref.name, label=described)
            self._keys[entry.key] = ref
            for option, kind in _output_options(registered.factory).items():
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
        self.trainer = Trainer(self.model, corpus, config, callbacks, run=spec.to_dict(), out=Path(spec.out),
                               saver=lambda path: self._save(path, periodic=True))
        self._lost_states: list[CallbackError] = []
        self._out_refused: SaveError | None = None  # why `out` did not take the run, when it did not
        self._resumed = resume_from
        if resume_from is not None:
            self.trainer.restore(resume_from)
        resumed_at = None
        if resume_from is not None and resumed_path is not None:
            assert resume_from.training is not None  # Run.resume takes only a resumable checkpoint
            end_step = max(self.trainer.step, config.epochs * self.trainer.steps_per_epoch)
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
        fields; the corpus's suggestions and the defaults fill the rest). `model` is a
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
        config = TrainConfig.for_corpus(loaded, **settings)
        if model is None:
            suggested = loaded.defaults.get("model", DEFAULT_MODEL)
            model = suggested if isinstance(suggested, str) else DEFAULT_MODEL
        model_name, effective = model_choice(model, model_options)
        spec = RunSpec(corpus=spec_text, config=config, model={"name": model_name, "options": effective}, out=_absolute(f"{loaded.name}.npz" if out is None else out),
                       callbacks=[_ref(c) for c in _listed(callbacks)], corpus_source=source,
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
        saved = checkpoints.load(path)
        if saved.format_version < 3:
            raise UsageError(f"{str(path)!r} was written by charseq {saved.charseq_version or '0.1'} (checkpoint format "
                             f"{saved.format_version}), which did not record its run, so it cannot be resumed; it still "
                             "works with generate and eval; start a new run to train further")
        if not saved.resumable:
            raise UsageError(f"{str(path)!r} holds no run to resume (it was saved without one); it works with "
                             "generate and eval")
        assert saved.training is not None  # (resumable: it has a run and its training state)
        spec = RunSpec.from_dict(saved.run)
        spec = replace(spec, corpus_options=_recorded_options(spec))
        if not saved.trusted and corpus is None:
            problem = trust.problem()
            why = f" ({problem})" if problem else ""
            raise UsageError(f"{str(path)!r} was not written by charseq here (or was edited){why}, so charseq does not "
                             f"read the corpus it names ({spec.corpus_source or spec.corpus!r}); give it with "
                             f"{setting('corpus')}")
        config = _resumed_config(spec.config, settings, saved.training)
        if model is not None:
            asked = model_choice(model)
            recorded = (spec.model["name"], dict(spec.model.get("options", {})))
            try:  # the recorded choice with today's defaults filled in (a 0.2 run records none)
                recorded = model_choice(*recorded)
            except UsageError:
                pass  # not installed, or options it no longer takes: the run's own checks say so
            if asked != recorded:
                raise UsageError(f"{setting('model', model)} differs from the resumed run's {model_spec(*recorded)}; a resumed "
                                 f"run keeps its model (it may change {may_change()})")
        loaded = _resumed_corpus(spec, corpus, dict(corpus_options or {}))
        added = [_ref(c) for c in _listed(callbacks)]
        drop_names = _listed(drop_callbacks)
        if not saved.trusted:
            # Its recorded paths are nobody's word: the callbacks that write files there are
            # left out (given again, they come back), and --out defaults to the file resumed.
            # What this run then writes, and seals, names only paths given here.
            if out is None:
                raise UsageError(f"{str(path)!r} was not written by charseq here (or was edited), so the {setting('out')} "
                                 f"it records is not used; give {setting('out')} (the file resumed itself, to continue "
                                 "it there)")
            writers = sorted({ref.name for ref in spec.callbacks if ref not in added and _writes_files(ref)})
            writers = [name for name in writers if name not in drop_names]
            if writers:
                warnings.warn(f"{str(path)!r} was not written by charseq here (or was edited): its callbacks that write "
                              f"files ({', '.join(writers)}) are left out; give them again to keep them",
                              CharseqWarning, stacklevel=2)
                drop_names = [*drop_names, *writers]
        refs, dropped = _resumed_callbacks(spec.callbacks, added, drop_names)
        fresh = [ref for ref in added if ref not in spec.callbacks]  # given now: their files are not the run's yet
        extra_callbacks = list(extra_callbacks)
        extras = {f"_{type(c).__name__}" for c in extra_callbacks}
        stopper = saved.training["stopped_by"]
        if stopper is not None and (stopper in dropped or (stopper.startswith("_") and stopper not in extras)):
            dropped.add(stopper)  # a callback that is not in the resumed run no longer asks it to stop
        if dropped:  # a dropped callback's state goes with it, and so does its request to stop
            saved.training = dict(saved.training)
            saved.training["callbacks"] = {k: v for k, v in saved.training["callbacks"].items() if k not in dropped}
            saved.arrays = {n: a for n, a in saved.arrays.items()
                            if not any(n.startswith(f"callback.{key}.") for key in dropped)}
            if stopper in dropped:
                saved.training["stop_training"], saved.training["stopped_by"] = False, None
        # Any change makes a new line of work (a dropped callback's state is gone, even if it is
        # added again): it gets an id of its own, and the runs it came from are its parents.
        branch = config != spec.config or refs != spec.callbacks or bool(drop_names) or not saved.trusted
        if branch:  # (an unsealed checkpoint's own id and parents are only its claims: none are inherited)
            parents = [{"id": spec.id, "step": saved.training["step"]}, *spec.parents] if saved.trusted else []
            spec = replace(spec, id=uuid.uuid4().hex, parents=parents)
        spec = replace(spec, config=config, callbacks=refs, out=_absolute(out) if out is not None else spec.out,
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
    def complete(self) -> bool:
        """A resumed run that has nothing left to do: it ended, and neither more epochs nor a
        dropped stopping callback give it more."""
        trainer = self.trainer
        return self._resumed is not None and trainer.ended and (trainer.epoch >= self.config.epochs
                                                                or trainer.stop_training)

    def sample(self, length: int | None = None) -> ClosingSample:
        """What the model makes of its corpus now, at temperature 1 with the run's seed: a
        continuation of the corpus's opening, or new items (`length` characters at most;
        default: 20 for a corpus of random windows, else 200)."""
        length = default_length(self.corpus) if length is None else length
        return closing_sample(self.model, self.corpus, length, self.config.seed, self.config.seq_len)

    def fit(self) -> RunResult:
        """Train to the end and save `out`. Ctrl-C or SIGTERM (in the main thread) stops at the
        next step, saves, and returns status "interrupted"; a second one raises Aborted.
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
        return self._result(interrupted, saved, note)

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
            where = (f"at the end of epoch {trainer.epoch + 1}" if trainer.step_in_epoch == trainer.steps_per_epoch
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
        epochs = f"{trainer.epoch} epoch{'s' if trainer.epoch != 1 else ''}"
        return RunResult("finished", trainer.epoch, trainer.step, metrics, saved,
                         f"saved {shown(saved)} after {epochs}, {losses}")

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
        else:
            message = (f"the run is complete ({trainer.epoch} of {counted(self.config.epochs, 'epoch')}); give more "
                       f"{setting('epochs')} to train on")
        written = f"saved it to {shown(saved)}" if saved is not None else "nothing was written"
        return RunResult("complete", trainer.epoch, trainer.step, trainer.metrics, saved, f"{message}; {written}", 0,
                         trainer.stopped_by)


# -- helpers ---------------------------------------------------------------------------------


def _output_options(factory: Any) -> dict[str, str]:
    """A callback factory's ``output_options``: the options that name files it writes, and
    what kind of file (outputs.CHECKPOINT, METRICS or FILE); a list means FILE."""
    declared = getattr(factory, "output_options", None) or {}
    if isinstance(declared, dict):
        return {str(k): str(v) for k, v in declared.items()}
    return {str(name): outputs.FILE for name in declared}


def _writes_files(ref: CallbackRef) -> bool:
    """Whether a recorded callback names files it writes (its output_options are set)."""
    registry = get_registry()
    if ref.name not in registry.all("callback"):
        return False
    factory = registry.get("callback", ref.name).factory
    return any(ref.options.get(option) is not None for option in _output_options(factory))


def _listed(items: Any) -> list[Any]:
    """One item or several: a lone string (or CallbackRef, or (NAME, options) pair) is one."""
    single = isinstance(items, (str, CallbackRef)) or (
        isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], str) and isinstance(items[1], dict))
    return [items] if single else list(items)


def _ref(callback: str | CallbackRef | tuple[str, dict[str, Any]]) -> CallbackRef:
    """A callback choice as recorded: options converted to the factory's types, and its
    output paths made absolute so a resumed run writes the same files from anywhere."""
    if isinstance(callback, CallbackRef):
        name, options = callback.name, dict(callback.options)
    elif isinstance(callback, str):
        name, arg = parse_spec(callback)
        options = parse_options(arg, get_registry().get("callback", name))
    elif isinstance(callback, tuple) and len(callback) == 2 and isinstance(callback[0], str):
        name, options = callback[0], dict(callback[1])
    else:
        raise UsageError(f"a run's callbacks are given by name ('NAME:key=value'), got {callback!r}; "
                         "pass objects as extra_callbacks")
    registered = get_registry().get("callback", name)
    options = {**registered.defaults(), **registered.convert(options)}  # `patience=1` and `--patience 1` are one
    for option in _output_options(registered.factory):
        if isinstance(options.get(option), (str, os.PathLike)):
            options[option] = _absolute(options[option])
    for key, value in options.items():
        if not (value is None or isinstance(value, (bool, int, float, str))):
            options[key] = str(value)
    return CallbackRef(name, options)


def _absolute(path: str | os.PathLike) -> str:
    """The path made absolute; a trailing slash (a directory's name) is kept, to be refused.
    In a template only the part before the first field is normalised, so that `{epoch}/..`
    stays visible (and is refused) rather than folded away."""
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise UsageError(f"a path must name a file, got {path!r}")
    text = os.path.expanduser(os.fspath(path))
    if text.endswith(os.sep + ".") or text == ".":
        text = text[:-1]  # 'x.npz/.' names a directory, as 'x.npz/' does
    field = text.find("{")
    if field >= 0:
        head, tail = os.path.split(text[:field])
        return os.path.join(os.path.abspath(head or "."), tail + text[field:])
    absolute = os.path.abspath(text)
    return absolute + os.sep if text.endswith(os.sep) and not absolute.endswith(os.sep) else absolute


def _losses(metrics: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"

    validation = f", validation {show(metrics['val_loss'])}" if metrics.get("val_loss") is not None else ""
    return f"loss {show(metrics.get('loss'))}{validation} nats/char"


def _resumed_config(config: TrainConfig, settings: dict[str, Any], training: dict[str, Any]) -> TrainConfig:
    epochs_done = training["epoch"]
    values = config.to_dict()
    for key, value in settings.items():
        if value is None:
            continue
        if key not in values:
            raise UsageError(f"unknown training setting {key!r}; the settings are {', '.join(sorted(values))}")
        if value == values[key] and isinstance(value, bool) == isinstance(values[key], bool):
            continue
        if key not in RESUME_MAY_CHANGE:
            raise UsageError(f"{setting(key, value)} differs from the resumed run's {values[key]}; a resumed run keeps "
                             f"its settings (it may change {may_change()})")
        values[key] = value
    config = TrainConfig(**values)  # checks the types and ranges of what changed
    if config.epochs < epochs_done:
        raise UsageError(f"{setting('epochs', config.epochs)} is fewer than the {epochs_done} the run has done")
    if config.epochs == epochs_done and training["step_in_epoch"] and settings.get("epochs") is not None:
        raise UsageError(f"{setting('epochs', config.epochs)} would end the run inside epoch {epochs_done + 1}, which it is "
                         f"part way through (step {training['step_in_epoch']:,}); give at least {epochs_done + 1}")
    return config


def _recorded_options(spec: RunSpec) -> dict[str, Any]:
    """The options the run read its corpus with. A run that an earlier release recorded
    lacks those added since: each takes the value its provider declares for such runs
    (``legacy_options``), what that release did, so that the text reads as it did then
    and the fingerprint still matches (text: byte-exact, ``exact=True``)."""
    if spec.corpus_source is None:  # an object or a stream: recorded by this release, if by any
        return dict(spec.corpus_options)
    try:
        registered = get_registry().get("corpus", parse_spec(spec.corpus_source)[0])
    except CharseqError:
        return dict(spec.corpus_options)  # not installed: loading it says so
    legacy = getattr(registered.factory, "legacy_options", None) or {}
    return {**legacy, **spec.corpus_options}


def _give_corpus_again(recorded: str) -> str:
    """What to do about a run whose corpus cannot be loaded again from its record."""
    try:
        name, arg = parse_spec(recorded)
    except UsageError:
        name, arg = recorded, None
    if arg is None:
        return f"the run's corpus {recorded!r} was given as an object; give it again to resume"
    return (f"the run read its corpus {recorded!r} from a stream (standard input or a pipe), which cannot be read "
            f"again; to resume, give the same text: {setting('corpus', name + ':-')} with it piped in, or "
            f"{setting('corpus', name + ':FILE')} "
            "holding it")


def _resumed_corpus(spec: RunSpec, corpus: str | Corpus | None, options: dict[str, Any]) -> Corpus:
    """The run's corpus: found where it was (from any directory), or where `corpus` points,
    and refused unless its content is the content the run trained on."""
    if corpus is None and options:
        registered = get_registry().get("corpus", parse_spec(spec.corpus_source or spec.corpus)[0])
        for key, value in registered.effective(options).items():
            if key in options and spec.corpus_options.get(key) != value:
                raise UsageError(f"the resumed run read its corpus with {key}={spec.corpus_options.get(key)!r}, not "
                                 f"{value!r}; a resumed run may change {may_change()}")
    if isinstance(corpus, Corpus):
        loaded = corpus
    elif corpus is not None:
        recorded, given = parse_spec(spec.corpus_source or spec.corpus)[0], parse_spec(corpus)[0]
        if given != recorded and recorded in get_registry().all("corpus"):  # (its options would not apply)
            raise UsageError(f"the corpus at {corpus!r} is not the text the run trained on: the run trained on a "
                             f"{recorded!r} corpus, not {given!r}; resume on the same text, perhaps moved "
                             f"({recorded}:PATH)")
        loaded = get_corpus(corpus, **{**spec.corpus_options, **options})
    elif spec.corpus_source is None:
        raise UsageError(_give_corpus_again(spec.corpus))
    else:
        try:
            loaded = get_corpus(spec.corpus_source, **spec.corpus_options)
        except UsageError as exc:
            raise UsageError(f"cannot load the run's corpus {spec.corpus!r} (recorded as {spec.corpus_source!r}): "
                             f"{exc}; if it moved, point at it with {setting('corpus')}") from None
    if loaded.fingerprint != spec.fingerprint:
        where = (f"at {spec.corpus_source!r}" if corpus is None else f"at {corpus!r}" if isinstance(corpus, str)
                 else "given")
        raise UsageError(f"the corpus {where} is not the text the run trained on ({counted(len(loaded), 'character')}; the "
                         f"run's had {spec.characters:,} and another content fingerprint); resume on the same "
                         f"text, pointing at it with {setting('corpus')} if it moved")
    return loaded


def _resumed_callbacks(refs: list[CallbackRef], added: list[CallbackRef],
                       dropped_names: Sequence[str]) -> tuple[list[CallbackRef], set[str]]:
    """The callbacks of a resumed run, and the state keys of those dropped."""
    names = [ref.name for ref in refs]
    for name in dropped_names:
        if name not in names:
            raise UsageError(f"the run has no callback {name!r} to drop; it has: {', '.join(names) or 'none'}")
    keys = _keys(refs)
    dropped = {key for key, ref in zip(keys, refs) if ref.name in dropped_names}
    kept = [ref for ref in refs if ref.name not in dropped_names]
    for ref in added:
        if ref in kept:
            continue  # the same as one the run has: repeating the first command line is fine
        same_name = [k for k in kept if k.name == ref.name]
        if same_name:
            shown = format_options(same_name[0].options)
            raise UsageError(f"the run already has callback {ref.name!r} ({shown or 'no options'}); to replace it, drop "
                             f"it too: {setting('drop_callbacks', [ref.name])}")
        kept.append(ref)
    return kept, dropped


def _keys(refs: list[CallbackRef]) -> list[str]:
    """The state keys CallbackList gives these callbacks: NAME, then NAME-2, ..."""
    keys: list[str] = []
    seen: dict[str, int] = {}
    for ref in refs:
        seen[ref.name] = seen.get(ref.name, 0) + 1
        keys.append(ref.name if seen[ref.name] == 1 else f"{ref.name}-{seen[ref.name]}")
    return keys


