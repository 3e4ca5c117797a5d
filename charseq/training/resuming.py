"""Resuming a run: reading the checkpoint that holds it, and what may change and what may
not (its settings, model, corpus and callbacks), each refused in one line that says why.
Run.resume puts these together.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from charseq import trust
from charseq.checkpoints import format as checkpoints
from charseq.data.corpora import get_corpus
from charseq.data.corpus import Corpus
from charseq.errors import CharseqError, CharseqWarning, UsageError, counted, setting
from charseq.hooks.options import format_options
from charseq.hooks.registry import get_registry, parse_spec
from charseq.models.build import model_choice, model_spec
from charseq.runs.settings import TrainConfig, given, shown
from charseq.runs.spec import RESUME_MAY_CHANGE, CallbackRef, RunSpec, may_change
from charseq.training.choices import writes_files


def read_resumable(path: Path, corpus_given: bool) -> tuple[checkpoints.Checkpoint, RunSpec]:
    """The checkpoint at `path` and the run it records (with the corpus options an earlier
    release read it with), refused when it holds no run to resume, or when it was not
    written here and names a corpus that was not given anew (a corpus is never read on a
    file's word)."""
    saved = checkpoints.load(path)
    if saved.format_version < 3:
        raise UsageError(f"{str(path)!r} was written by charseq {saved.charseq_version or '0.1'} (checkpoint format "
                         f"{saved.format_version}), which did not record its run, so it cannot be resumed; it still "
                         "works with generate and eval; start a new run to train further")
    if not saved.resumable:
        raise UsageError(f"{str(path)!r} holds no run to resume (it was saved without one); it works with "
                         "generate and eval")
    spec = recorded_run(saved)
    assert spec is not None
    check_corpus_may_be_read(path, saved, spec, corpus_given)
    return saved, spec


def recorded_run(saved: checkpoints.Checkpoint) -> RunSpec | None:
    """The run a checkpoint records, with the corpus options an earlier release read its
    corpus with; None for a checkpoint of format 1 or 2, or one saved without its run."""
    if saved.format_version < 3 or not saved.run:
        return None
    spec = RunSpec.from_dict(saved.run)
    return replace(spec, corpus_options=recorded_options(spec))


def check_corpus_may_be_read(path: Path, saved: checkpoints.Checkpoint, spec: RunSpec, corpus_given: bool,
                             doing: str = "resume") -> None:
    """Refuse to read the corpus a checkpoint names when the checkpoint was not written
    here and the corpus was not given anew: a corpus is never read on a file's word."""
    if not saved.trusted and not corpus_given:
        raise UsageError(f"{_not_written_here(path)} so charseq does not read the corpus it names "
                         f"({spec.corpus_source or spec.corpus!r}); give it with {_pointing(doing)}")


def check_same_model(model: str, spec: RunSpec) -> None:
    """A model given on resuming must be the run's own: a model cannot change part way."""
    asked = model_choice(model)
    recorded = (spec.model["name"], dict(spec.model.get("options", {})))
    try:  # the recorded choice with today's defaults filled in (a 0.2 run records none)
        recorded = model_choice(*recorded)
    except UsageError:
        pass  # not installed, or options it no longer takes: the run's own checks say so
    if asked != recorded:
        raise UsageError(f"{setting('model', model)} differs from the resumed run's {model_spec(*recorded)}; a resumed "
                         f"run keeps its model (it may change {may_change()})")


def untrusted_writers(path: Path, spec: RunSpec, added: list[CallbackRef], drop_names: Sequence[str],
                      out: Any) -> list[str]:
    """For a checkpoint not written here, whose recorded paths are nobody's word: the
    callbacks that write files there are left out (given again, they come back), with a
    warning, and `out` must be given (the file resumed itself, to continue it there)."""
    if out is None:
        raise UsageError(f"{_not_written_here(path)} so the {setting('out')} it records is not used; give "
                         f"{setting('out')} (the file resumed itself, to continue it there)")
    writers = sorted({ref.name for ref in spec.callbacks if ref not in added and writes_files(ref)})
    writers = [name for name in writers if name not in drop_names]
    if writers:
        warnings.warn(f"{_not_written_here(path)} its callbacks that write files ({', '.join(writers)}) are left "
                      "out; give them again to keep them",
                      CharseqWarning, stacklevel=3)
    return writers


def forget_dropped(saved: checkpoints.Checkpoint, dropped: set[str], extras: set[str]) -> None:
    """A dropped callback's state goes with it, and so does its request to stop (as does the
    request of an unrecorded callback that is not given again)."""
    assert saved.training is not None
    stopper = saved.training["stopped_by"]
    if stopper is not None and (stopper in dropped or (stopper.startswith("_") and stopper not in extras)):
        dropped.add(stopper)
    if not dropped:
        return
    saved.training = dict(saved.training)
    saved.training["callbacks"] = {k: v for k, v in saved.training["callbacks"].items() if k not in dropped}
    saved.arrays = {n: a for n, a in saved.arrays.items() if not any(n.startswith(f"callback.{key}.") for key in dropped)}
    if stopper in dropped:
        saved.training["stop_training"], saved.training["stopped_by"] = False, None


def branched(spec: RunSpec, saved: checkpoints.Checkpoint, config: TrainConfig, refs: list[CallbackRef],
             drop_names: Sequence[str]) -> tuple[RunSpec, bool]:
    """Any change makes a new line of work (a dropped callback's state is gone, even if it is
    added again): it gets an id of its own, and the runs it came from are its parents. An
    unsealed checkpoint's own id and parents are only its claims: none are inherited."""
    assert saved.training is not None
    branch = config != spec.config or refs != spec.callbacks or bool(drop_names) or not saved.trusted
    if branch:
        parents = [{"id": spec.id, "step": saved.training["step"]}, *spec.parents] if saved.trusted else []
        spec = replace(spec, id=uuid.uuid4().hex, parents=parents)
    return spec, branch


def resumed_config(config: TrainConfig, settings: dict[str, Any], training: dict[str, Any]) -> TrainConfig:
    epochs_done = training["epoch"]
    values = config.to_dict()
    for key, value in settings.items():
        if value is None:
            continue
        if key not in values:
            raise UsageError(f"unknown training setting {key!r}; the settings are {', '.join(sorted(values))}")
        # The same, or the same as charseq says it (a time limit of 12.34 s is said 12.3s): kept as it was.
        same = given(key, value) == values[key] or shown(key, given(key, value)) == shown(key, values[key])
        if same and isinstance(value, bool) == isinstance(values[key], bool):
            continue
        if key not in RESUME_MAY_CHANGE:
            raise UsageError(f"{setting(key, value)} differs from the resumed run's {shown(key, values[key])}; a resumed "
                             f"run keeps its settings (it may change {may_change()})")
        if key == "eval_every" and training.get("planned_steps") is not None:
            raise UsageError(f"{setting(key, value)} differs from the resumed run's {shown(key, values[key])}; a "
                             "time-limited run keeps it once its plan is made, which counted its evaluations")
        values[key] = value
    config = TrainConfig(**values)  # checks the types and ranges of what changed
    if config.epochs and config.epochs < epochs_done:  # (0: unbounded, with a time limit)
        raise UsageError(f"{setting('epochs', config.epochs)} is fewer than the {epochs_done} the run has done")
    if config.epochs == epochs_done and training["step_in_epoch"] and settings.get("epochs") is not None:
        raise UsageError(f"{setting('epochs', config.epochs)} would end the run inside epoch {epochs_done + 1}, which it is "
                         f"part way through (step {training['step_in_epoch']:,}); give at least {epochs_done + 1}")
    return config


def recorded_options(spec: RunSpec) -> dict[str, Any]:
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


def _not_written_here(path: Path) -> str:
    """The start of a message about a checkpoint not sealed with this user's key, with why
    when charseq knows (no key yet, or one others may write)."""
    problem = trust.problem()
    return f"{str(path)!r} was not written by charseq here, or was edited{': ' + problem + ';' if problem else ','}"


def _pointing(doing: str) -> str:
    """How to give a run's corpus anew: to score its held-out part, say that part too."""
    return setting("corpus") if doing == "resume" else f"{setting('corpus')} and {setting('held_out')}"


def _give_corpus_again(recorded: str, doing: str = "resume") -> str:
    """What to do about a run whose corpus cannot be loaded again from its record."""
    try:
        name, arg = parse_spec(recorded)
    except UsageError:
        name, arg = recorded, None
    if arg is None:
        return f"the run's corpus {recorded!r} was given as an object; give it again to {doing}"
    return (f"the run read its corpus {recorded!r} from a stream (standard input or a pipe), which cannot be read "
            f"again; to {doing}, give the same text: {setting('corpus', name + ':-')} with it piped in, or "
            f"{setting('corpus', name + ':FILE')} "
            "holding it")


def resumed_corpus(spec: RunSpec, corpus: str | Corpus | None, options: dict[str, Any],
                   doing: str = "resume") -> Corpus:
    """The run's corpus: found where it was (from any directory), or where `corpus` points,
    and refused unless its content is the content the run trained on; `doing` is what it is
    found for ("resume", "score"), for the messages."""
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
                             f"{recorded!r} corpus, not {given!r}; {doing} on the same text, perhaps moved "
                             f"({recorded}:PATH)")
        loaded = get_corpus(corpus, **{**spec.corpus_options, **options})
    elif spec.corpus_source is None:
        raise UsageError(_give_corpus_again(spec.corpus, doing))
    else:
        try:
            loaded = get_corpus(spec.corpus_source, **spec.corpus_options)
        except UsageError as exc:
            raise UsageError(f"cannot load the run's corpus {spec.corpus!r} (recorded as {spec.corpus_source!r}): "
                             f"{exc}; if it moved, point at it with {_pointing(doing)}") from None
    if loaded.fingerprint != spec.fingerprint:
        where = (f"at {spec.corpus_source!r}" if corpus is None else f"at {corpus!r}" if isinstance(corpus, str)
                 else "given")
        raise UsageError(f"the corpus {where} is not the text the run trained on ({counted(len(loaded), 'character')}; the "
                         f"run's had {spec.characters:,} and another content fingerprint); {doing} on the same "
                         f"text, pointing at it with {_pointing(doing)} if it moved")
    return loaded


def resumed_callbacks(refs: list[CallbackRef], added: list[CallbackRef],
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
