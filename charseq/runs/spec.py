"""What makes a run the run it is, as data: ``RunSpec``, which every checkpoint records
(the corpus as asked for and as found again, a fingerprint of its content, the model, the
settings, the callbacks in order with their options, and where the checkpoint goes), so
that ``Run.resume(path)`` rebuilds the same run from the file alone.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from charseq import schema
from charseq.errors import Placeholder, UsageError, setting
from charseq.runs.settings import TrainConfig

# What a resumed run may change: anything else would make it another run. --epochs may
# lengthen it (never below the epochs done), --eval-every only moves evaluations; --out
# and --corpus (a moved file with the same content) say where things are; callbacks are
# added and dropped with their own options. Not the time limit: a time-limited run's
# schedule was planned over it from the first step, and a resumed run ends where the
# uninterrupted one would, on the plan its checkpoint records.
RESUME_MAY_CHANGE = ("epochs", "eval_every")


def may_change() -> str:
    """What a resumed run may change, for messages (in the words of whoever asks)."""
    return (f"{setting('epochs')} (more), {setting('eval_every')}, {setting('out')}, {setting('corpus')} (the same "
            f"text, moved) and the callbacks ({setting('callbacks')} adds one, {setting('drop_callbacks', Placeholder('NAME'))} drops one)")


@dataclass(frozen=True, eq=False)
class CallbackRef:
    """A registered callback chosen for a run, by name, with the options it is built with
    (its factory's defaults filled in, so that two spellings of one choice are equal)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    def _identity(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)  # NaN equals NaN here, as it should for options

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallbackRef) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


@dataclass
class RunSpec:
    """Everything that makes a run the run it is; JSON-serialisable (``to_dict``)."""

    corpus: str  # NAME[:ARG] as it was asked for
    config: TrainConfig
    out: str  # the checkpoint, an absolute path
    callbacks: list[CallbackRef] = field(default_factory=list)
    corpus_source: str | None = None  # NAME[:ARG] that finds it from any directory; None: give it again
    corpus_options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # of the corpus's content: a resumed run refuses any other text
    characters: int = 0
    model: dict[str, Any] = field(default_factory=lambda: {"name": "rnn"})
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The runs this one branched from, nearest first, each with the step it was left at: a
    # resumed run that changes anything is a new line of work, with an id of its own.
    parents: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "parents": [dict(p) for p in self.parents], "corpus": self.corpus,
                "corpus_source": self.corpus_source,
                "corpus_options": dict(self.corpus_options), "fingerprint": self.fingerprint,
                "characters": self.characters, "model": dict(self.model), "config": self.config.to_dict(),
                "callbacks": [ref.to_dict() for ref in self.callbacks], "out": self.out}

    @classmethod
    def from_dict(cls, data: Any) -> RunSpec:
        """From `to_dict()`'s output, read from a file: every field is checked."""
        try:
            _RUN(data, "run")
            if not os.path.isabs(data["out"]):
                raise schema.Invalid(f"run.out must be an absolute path, got {data['out']!r}")
            if "\\u0000" in json.dumps(data):
                raise schema.Invalid("run holds a NUL character, which no path or name can")
        except schema.Invalid as exc:
            raise UsageError(str(exc)) from None
        return cls(corpus=data["corpus"], config=TrainConfig.from_dict(data["config"]), out=data["out"],
                   callbacks=[CallbackRef(c["name"], dict(c["options"])) for c in data["callbacks"]],
                   corpus_source=data["corpus_source"], corpus_options=dict(data["corpus_options"]),
                   fingerprint=data["fingerprint"], characters=data["characters"], model=dict(data["model"]),
                   id=data["id"], parents=[dict(p) for p in data.get("parents", [])])


_RUN = schema.record({
    "id": schema.string(64),
    "parents": schema.list_of(schema.record({"id": schema.string(64), "step": schema.integer(0, 1 << 62)}),
                              max_length=10_000),
    "corpus": schema.string(),
    "corpus_source": schema.optional(schema.string()),
    "corpus_options": schema.map_of(schema.SCALAR, max_length=64),
    "fingerprint": schema.string(128),
    "characters": schema.integer(0),
    "model": schema.record({"name": schema.string(64)}, {"options": schema.map_of(schema.SCALAR, max_length=64)}),
    "config": schema.map_of(schema.SCALAR, max_length=256),
    "callbacks": schema.list_of(schema.record({"name": schema.string(256),
                                               "options": schema.map_of(schema.SCALAR, max_length=256)}),
                                max_length=256),
    "out": schema.string(),
})
