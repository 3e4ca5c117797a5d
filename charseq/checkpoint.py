"""Checkpoints: one .npz of plain arrays plus JSON metadata; data, never code.

The file holds the parameters U W b V c and ``metadata``, a uint8 array of UTF-8
JSON: format and version, the vocabulary, the training config and progress, and
a SHA-256 of the parameters. It is read with ``allow_pickle=False``, so loading
cannot execute anything, and written atomically, so the path always holds a
whole checkpoint: the old one or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
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
FORMAT_VERSION = 1
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Checkpoint:
    """A trained model, its vocabulary, and how it was trained."""

    model: VanillaRNN
    vocab: Vocabulary
    config: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    corpus: str | None = None


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
        "config": checkpoint.config,
        "progress": checkpoint.progress,
        "sha256": _digest(params),
    }
    arrays = {name: params[name] for name in PARAM_NAMES}
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
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint ({_reason(exc)})") from None
    if not isinstance(arrays, dict) or "metadata" not in arrays:
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint (no metadata)")
    metadata = _read_metadata(path, arrays.pop("metadata"))
    vocab = Vocabulary(metadata["vocabulary"])
    _check_arrays(path, arrays, metadata, len(vocab))
    return Checkpoint(
        model=VanillaRNN.from_params(arrays),
        vocab=vocab,
        config=dict(metadata.get("config") or {}),
        progress=dict(metadata.get("progress") or {}),
        corpus=metadata.get("corpus"),
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
    if set(arrays) != set(PARAM_NAMES):
        raise UsageError(f"{bad}: arrays {sorted(arrays)}, expected {sorted(PARAM_NAMES)}")
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


def _digest(params: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in PARAM_NAMES:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(params[name]).tobytes())
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
