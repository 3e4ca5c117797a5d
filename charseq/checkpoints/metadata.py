"""What a checkpoint's JSON metadata may hold, field by field, with its types and ranges:
checked (charseq.schema) before anything in it is used.
"""

from __future__ import annotations

from typing import Any

from charseq import schema

DTYPES = ("float32", "float64")

_MANIFEST = schema.map_of(schema.record({"dtype": schema.string(16),
                                         "shape": schema.list_of(schema.integer(0, 1 << 40), max_length=8)}))
_METRIC_VALUES = schema.map_of(schema.optional(schema.number()), max_length=64)


def _history_entry(value: Any, where: str) -> None:
    """One evaluation's metrics: numbers (or null), with its epoch, step and loss."""
    _METRIC_VALUES(value, where)
    for key, check in (("epoch", schema.integer(0, 1 << 31)), ("step", schema.integer(0, 1 << 62)),
                       ("loss", schema.optional(schema.number()))):
        if key not in value:
            raise schema.Invalid(f"{where} lacks {key}")
        check(value[key], f"{where}.{key}")


_HISTORY_ENTRY = _history_entry


def _since_eval(value: Any, where: str) -> None:
    """Loss sum, steps and seconds since the last evaluation."""
    schema.list_of(schema.number(), 3, 3)(value, where)
    schema.integer(0)(value[1], f"{where}[1]")
    schema.number(0, finite=True)(value[2], f"{where}[2]")


_TRAINING = schema.record({
    "step": schema.integer(0, 1 << 62),
    "epoch": schema.integer(0, 1 << 31),
    "step_in_epoch": schema.integer(0, 1 << 62),
    "rng": schema.record({
        "bit_generator": schema.string(16, choices=("PCG64",)),
        "state": schema.record({"state": schema.integer(0, (1 << 128) - 1), "inc": schema.integer(0, (1 << 128) - 1)}),
        "has_uint32": schema.integer(0, 1),
        "uinteger": schema.integer(0, (1 << 32) - 1),
    }),
    "since_eval": _since_eval,
    "wall_time": schema.number(0, finite=True),
    "history": schema.list_of(_HISTORY_ENTRY, max_length=1_000_000),
    "stop_training": schema.boolean,
    "stopped_by": schema.optional(schema.string(256)),
    "ended": schema.boolean,
    "callbacks": schema.map_of(schema.map_of(schema.json_value()), max_length=1000),
    "weights_from": schema.optional(_HISTORY_ENTRY),
}, {"blas_threads": schema.integer(1, 1 << 16), "planned_steps": schema.integer(0, 1 << 62),
    "time_up": schema.boolean})

METADATA = schema.record({
    "format": schema.string(64),
    "format_version": schema.integer(1),
    "charseq_version": schema.string(64),
    "vocabulary": schema.list_of(schema.char, max_length=1 << 21, min_length=1),
    "model": schema.record({"name": schema.string(64), "hidden_size": schema.integer(1, 1 << 16),
                            "dtype": schema.string(16, choices=DTYPES)},
                           {"options": schema.map_of(schema.SCALAR, max_length=64),
                            "package": schema.optional(schema.string(256)),
                            "params": schema.map_of(schema.record({"dtype": schema.string(16, choices=DTYPES),
                                                                   "shape": schema.list_of(schema.integer(0, 1 << 40),
                                                                                           max_length=8)}),
                                                    max_length=4096)}),
    "corpus": schema.optional(schema.string()),
    "config": schema.optional(schema.map_of(schema.SCALAR, max_length=256)),
    "run": schema.optional(schema.map_of(schema.json_value(), max_length=64)),
    "progress": schema.map_of(schema.SCALAR, max_length=64),
    "training": schema.optional(_TRAINING),
    "arrays": _MANIFEST,
}, {"items": schema.optional(schema.record({"end": schema.char, "seen": schema.integer(0, 1 << 40)}))})

LEGACY_METADATA = schema.record(
    {"format": schema.string(64), "format_version": schema.integer(1),
     "vocabulary": schema.list_of(schema.char, max_length=1 << 21, min_length=1),
     "hidden_size": schema.integer(1, 1 << 16), "sha256": schema.string(64)},
    {"charseq_version": schema.string(64), "dtype": schema.string(16, choices=DTYPES),
     "corpus": schema.optional(schema.string()), "corpus_spec": schema.optional(schema.string()),
     "corpus_options": schema.optional(schema.map_of(schema.SCALAR)),
     "config": schema.optional(schema.map_of(schema.SCALAR, max_length=256)),
     "progress": schema.optional(schema.map_of(schema.SCALAR, max_length=64)),
     "training": schema.optional(schema.json_value()), "arrays": _MANIFEST},
)
