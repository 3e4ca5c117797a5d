"""Checkpoints: one .npz of plain arrays plus JSON metadata; data, never code.

The file holds the parameters U W b V c, the arrays a resumed run needs (optimizer
moments, the carried hidden state, callbacks' arrays), and ``metadata``, a uint8 array
of UTF-8 JSON: format and version, the vocabulary, the training config, progress and
state, a manifest of every other array's dtype and shape, and a SHA-256 of all the
arrays. It is read with ``allow_pickle=False``, so loading cannot execute anything, and
written atomically, so the path always holds a whole checkpoint: the old one or the new
one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charseq.errors import CharseqError, UsageError
from charseq.model import PARAM_NAMES, VanillaRNN
from charseq.vocab import Vocabulary

FORMAT = "charseq-checkpoint"
FORMAT_VERSION = 2  # 2 added the training state; version 1 files still load
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_STATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_STATE_KINDS = "biuf"  # bool, integer, unsigned, float: plain numbers only


@dataclass
class Checkpoint:
    """A trained model, its vocabulary, and how it was trained."""

    model: VanillaRNN
    vocab: Vocabulary
    config: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    corpus: str | None = None
    corpus_spec: str | None = None  # how to load the corpus again, when known
    corpus_options: dict[str, Any] = field(default_factory=dict)
    # What `Trainer.restore` needs to continue the run exactly: JSON values, and arrays by name.
    training: dict[str, Any] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def resumable(self) -> bool:
        return self.training is not None


def save(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then os.replace."""
    import charseq

    path = Path(path)
    params = checkpoint.model.params
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "charseq_version": charseq.__version__,
        "vocabulary": list(checkpoint.vocab.symbols),
        "hidden_size": checkpoint.model.hidden_size,
        "dtype": str(checkpoint.model.dtype),
        "corpus": checkpoint.corpus,
        "corpus_spec": checkpoint.corpus_spec,
        "corpus_options": checkpoint.corpus_options,
        "config": checkpoint.config,
        "progress": checkpoint.progress,
        "training": checkpoint.training,
        "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in checkpoint.arrays.items()},
    }
    arrays = {name: params[name] for name in PARAM_NAMES}
    for name, array in checkpoint.arrays.items():
        if name in arrays or name == "metadata" or not _STATE_NAME.match(name) or array.dtype.kind not in _STATE_KINDS:
            raise ValueError(f"cannot save state array {name!r} of dtype {array.dtype}")
        arrays[name] = array
    metadata["sha256"] = _digest(arrays)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write a checkpoint in {str(directory)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return path


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; anything else is refused with a one-line error."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise UsageError(f"checkpoint {str(path)!r} {what}")
    if not zipfile.is_zipfile(path):  # np.load would take anything else for a .npy or a pickle
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint ({_reason(exc)})") from None
    if "metadata" not in arrays:
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint (no metadata)")
    metadata = _read_metadata(path, arrays.pop("metadata"))
    vocab = Vocabulary(metadata["vocabulary"])
    _check_arrays(path, arrays, metadata, len(vocab))
    training = metadata.get("training")
    if training is not None and not isinstance(training, dict):
        raise UsageError(f"checkpoint {str(path)!r} is damaged: its training state is not a mapping")
    return Checkpoint(
        model=VanillaRNN.from_params(arrays),
        vocab=vocab,
        config=dict(metadata.get("config") or {}),
        progress=dict(metadata.get("progress") or {}),
        corpus=metadata.get("corpus"),
        corpus_spec=metadata.get("corpus_spec"),
        corpus_options=dict(metadata.get("corpus_options") or {}),
        training=training,
        arrays={name: arrays[name] for name in metadata.get("arrays") or {}},
    )


def _read_metadata(path: Path, raw: np.ndarray) -> dict[str, Any]:
    bad = f"{str(path)!r} is not a charseq checkpoint"
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise UsageError(f"{bad} (metadata is not JSON bytes)")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{bad} (metadata is not valid JSON)") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise UsageError(f"{bad} (wrong format)")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"{bad} (bad format version {version!r})")
    if version > FORMAT_VERSION:
        raise UsageError(
            f"{str(path)!r} has checkpoint format {version}, newer than this charseq reads "
            f"({FORMAT_VERSION}); upgrade charseq"
        )
    if not isinstance(metadata.get("vocabulary"), list) or not isinstance(metadata.get("hidden_size"), int):
        raise UsageError(f"{bad} (metadata lacks the vocabulary or hidden size)")
    return metadata


def _check_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any], vocab_size: int) -> None:
    bad = f"checkpoint {str(path)!r} is damaged"
    manifest = metadata.get("arrays") or {}
    if not isinstance(manifest, dict) or set(manifest) & set(PARAM_NAMES):
        raise UsageError(f"{bad}: its array manifest is malformed")
    expected = set(PARAM_NAMES) | set(manifest)
    if set(arrays) != expected:
        raise UsageError(f"{bad}: arrays {sorted(arrays)}, expected {sorted(expected)}")
    for name, entry in manifest.items():
        array = arrays[name]
        if (not isinstance(entry, dict) or entry.get("dtype") != str(array.dtype)
                or entry.get("shape") != list(array.shape) or array.dtype.kind not in _STATE_KINDS):
            raise UsageError(f"{bad}: {name} is {array.dtype}{list(array.shape)}, its manifest says {entry}")
    H, V = metadata["hidden_size"], vocab_size
    shapes = {"U": (H, V), "W": (H, H), "b": (H,), "V": (V, H), "c": (V,)}
    dtype = np.dtype(metadata.get("dtype", "float32"))
    for name, shape in shapes.items():
        array = arrays[name]
        if array.shape != shape or array.dtype != dtype or dtype not in _DTYPES:
            raise UsageError(
                f"{bad}: {name} is {array.dtype}{list(array.shape)}, expected {dtype}{list(shape)}"
            )
    if metadata.get("sha256") != _digest(arrays):
        raise UsageError(f"{bad}: its checksum does not match its arrays")


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """The parameters in their fixed order, then any state arrays by name (version 1 had none)."""
    digest = hashlib.sha256()
    for name in [*PARAM_NAMES, *sorted(set(arrays) - set(PARAM_NAMES))]:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return text if len(text) < 120 else text[:117] + "..."


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
