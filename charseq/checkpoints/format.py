"""Checkpoints: one .npz of plain arrays plus JSON metadata; data, never code.

The file holds the model's parameters (``param.NAME``), the arrays a resumed run needs
(optimizer moments, the carried state, callbacks' arrays), ``metadata`` (UTF-8 JSON: the
format, the vocabulary, the model's name, options and the package that provides it, the
description of the run, its progress and state, a manifest of every array) and
``checksum``, a SHA-256 over all of it, metadata included. The model is rebuilt by its
registered plugin from its name and options, then given the parameters. Reading never unpickles (``allow_pickle=False``) and checks everything before
use: the members' declared sizes before inflating any, every metadata field's type and
range, the arrays against the manifest, the checksum, and that the weights are finite.
Writing is atomic, so the path always holds a whole checkpoint: the old one or the new.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charseq import schema
from charseq import trust
from charseq.checkpoints.metadata import LEGACY_METADATA, METADATA
from charseq.errors import CharseqError, SaveError, UsageError, setting
from charseq.files import atomic_write, kind_of
from charseq.models.base import ARRAY_NAME, Model
from charseq.runs.spec import RunSpec
from charseq.models.rnn import PARAM_NAMES, VanillaRNN
from charseq.data.vocab import Vocabulary
from charseq.version import __version__

FORMAT = "charseq-checkpoint"
# 5: a corpus of items (its end symbol, and fingerprints of its items); 4: any registered
# model, its parameters by name; 3: the metadata under the checksum, and the run's
# description; 2: the training state; 1: weights. Formats 1-3 hold the vanilla RNN.
FORMAT_VERSION = 5
SEEN_ITEMS = "items.seen"  # sorted uint64 fingerprints of the items a model of items was trained on
PARAM_PREFIX = "param."
STATE_NAME = ARRAY_NAME  # a checkpoint member: a parameter, or a state array
_STATE_KINDS = "biuf"  # bool, integer, unsigned, float: plain numbers only
_RESERVED = ("metadata", "checksum", "seal")
MAX_METADATA_BYTES = 32 << 20  # a run's whole history fits many times over
MAX_METADATA_INFLATION = 8  # charseq stores it uncompressed; JSON that inflates more is built to
# Members may be compressed (charseq writes them stored), but all of them together may not
# inflate to more than this many times the file's size: a zip bomb is refused unread.
MAX_INFLATION = 16
_NPY_HEADER_BYTES = 4096


@dataclass
class Checkpoint:
    """A trained model, its vocabulary, and how it was trained.

    ``run`` is the description of the run that wrote it (see charseq.training.run), and
    ``training`` with ``arrays`` the state that continues it; both are None in a
    checkpoint that can generate and evaluate but not resume. A model trained on items
    (``Corpus.from_items``) has the symbol that ends them, ``item_end``, and the sorted
    fingerprints of the items, ``seen_items`` (charseq.data.items.item_hash).
    """

    model: Model
    vocab: Vocabulary
    config: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    corpus: str | None = None
    run: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    charseq_version: str | None = None
    # Whether charseq wrote it here, unedited (see charseq.trust): only then may a resumed
    # run replace the files its description names.
    trusted: bool = False
    checksum: str | None = None  # as read: the same file still holds it while this matches
    item_end: str | None = None
    seen_items: np.ndarray | None = None

    @property
    def resumable(self) -> bool:
        return self.run is not None and self.training is not None


def save(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write atomically; a failure (disk full, file-size limit) is a SaveError, and the
    path keeps what it held."""
    path = Path(path)
    model = checkpoint.model
    arrays = {PARAM_PREFIX + name: np.ascontiguousarray(view) for name, view in model.params.items()}
    _check_savable(model)
    if checkpoint.item_end is not None:
        seen = checkpoint.seen_items if checkpoint.seen_items is not None else np.empty(0, np.uint64)
        arrays[SEEN_ITEMS] = np.ascontiguousarray(seen, dtype=np.uint64)
    for name, array in checkpoint.arrays.items():
        if (name in arrays or name in _RESERVED or not STATE_NAME.match(name)
                or array.dtype.kind not in _STATE_KINDS):
            raise ValueError(f"cannot save state array {name!r} of dtype {array.dtype}")
        arrays[name] = array
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "charseq_version": __version__,
        "vocabulary": list(checkpoint.vocab.symbols),
        "model": {"name": model.name, "options": model.options(), "package": _package(model.name),
                  "hidden_size": model.hidden_size, "dtype": str(model.dtype),
                  "params": {name: {"dtype": str(view.dtype), "shape": list(view.shape)}
                             for name, view in model.params.items()}},
        "corpus": checkpoint.corpus,
        "config": None if checkpoint.run is not None else checkpoint.config,
        "run": checkpoint.run,
        "progress": checkpoint.progress,
        "training": checkpoint.training,
        "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in checkpoint.arrays.items()},
        "items": None if checkpoint.item_end is None else {"end": checkpoint.item_end,
                                                            "seen": len(arrays[SEEN_ITEMS])},
    }
    try:
        blob = json.dumps(metadata, default=plain_json).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SaveError(path, f"its metadata is not JSON ({exc})") from None
    members = {**arrays, "metadata": np.frombuffer(blob, dtype=np.uint8)}
    checksum = _digest(arrays, blob)
    members["checksum"] = np.frombuffer(checksum.encode("ascii"), dtype=np.uint8)
    seal = trust.seal(checksum) if checkpoint.run is not None else None
    if seal is not None:  # this user's charseq wrote it: a resumed run may trust what it records
        members["seal"] = np.frombuffer(seal.encode("ascii"), dtype=np.uint8)
    elif checkpoint.run is not None:
        _warn_unsealed()
    # (numpy's stub reads **members as possibly holding allow_pickle; no member is named so)
    return atomic_write(path, lambda f: np.savez(f, **members))  # type: ignore[arg-type]


def _check_savable(model: Model) -> None:
    """Refuse, before anything is written, a model whose record this charseq could not read
    back: the file at the path keeps what it held."""
    from charseq.models.base import check_model
    from charseq.models.build import model_label

    try:
        check_model(model, model_label(model.name))
    except CharseqError as exc:
        raise CharseqError(f"{exc}; the checkpoint was not written") from None


def _package(model_name: str) -> str | None:
    """The package that provides a model, so that a machine without it can say what to install."""
    from charseq.models.build import model_package

    try:
        return model_package(model_name)
    except UsageError:  # a model built without the registry
        return None


@functools.cache
def _warn_unsealed() -> None:
    """Once a process: a checkpoint written unsealed resumes as one from elsewhere."""
    import warnings

    from charseq.errors import CharseqWarning

    warnings.warn(f"{trust.problem()}: checkpoints are written unsealed, and resuming them will need "
                  f"{setting('corpus')} and will leave out the callbacks that write files", CharseqWarning, stacklevel=3)


def plain_json(value: Any) -> Any:
    """numpy scalars as Python numbers, for json.dumps; anything else is not JSON."""
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# -- reading --------------------------------------------------------------------------


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint; anything wrong with it is one UsageError line."""
    path = Path(path)
    shown = str(path)
    kind = kind_of(path)
    if kind is not None or not path.exists():
        raise UsageError(f"checkpoint {shown!r} {f'is {kind}' if kind else 'does not exist'}")
    if not zipfile.is_zipfile(path):  # np.load would take anything else for a .npy or a pickle
        raise UsageError(f"{shown!r} is not a charseq checkpoint (not an .npz archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(path, archive)
            metadata = _read_metadata(path, archive, members)
            arrays = _read_arrays(path, archive, members, metadata)
    except UsageError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        raise UsageError(f"{shown!r} is not a charseq checkpoint ({_reason(exc)})") from None
    return _checkpoint(path, metadata, arrays)


def _peek(path: str | os.PathLike, member: str, max_bytes: int) -> bytes | None:
    """One member's bytes, unchecked (the size bound only): what a file says of itself, for
    deciding whether it is a run's and for messages; None for anything unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_member(archive, archive.getinfo(member), max_bytes=max_bytes).tobytes()
    except Exception:  # whatever is wrong with it, it vouches for nothing
        return None


def _run_of(path: str | os.PathLike) -> dict[str, Any]:
    """The run description and training state a checkpoint says it holds (unchecked)."""
    raw = _peek(path, "metadata.npy", MAX_METADATA_BYTES)
    try:
        metadata = json.loads(raw.decode("utf-8")) if raw is not None else {}
    except (ValueError, RecursionError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def identity_of(path: str | os.PathLike) -> tuple[str | None, int]:
    """The id of the run a checkpoint says it belongs to and the step it holds, read from its
    metadata alone; (None, -1) for anything that is not a checkpoint of a run."""
    metadata = _run_of(path)
    try:
        run_id, step = metadata["run"]["id"], metadata["training"]["step"]
    except (KeyError, TypeError):
        return None, -1
    if not isinstance(run_id, str) or not schema.is_int(step):
        return None, -1
    return run_id, step


def checksum_of(path: str | os.PathLike) -> str | None:
    """The checksum a checkpoint file records (unchecked): what it holds now, in one word."""
    raw = _peek(path, "checksum.npy", 256)
    try:
        return raw.decode("ascii") if raw is not None else None
    except UnicodeDecodeError:
        return None


def parents_of(path: str | os.PathLike) -> list[str]:
    """The ids of the runs a checkpoint's run branched from, for messages (unchecked)."""
    try:
        parents = _run_of(path)["run"]["parents"]
        return [p["id"] for p in parents if isinstance(p, dict) and isinstance(p.get("id"), str)]
    except (KeyError, TypeError):
        return []


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name, refused when their declared sizes could not
    come from a checkpoint of this file's size."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names) or not all(name.endswith(".npy") for name in names):
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint (its members are not one .npy per array)")
    if "metadata.npy" not in names:
        raise UsageError(f"{str(path)!r} is not a charseq checkpoint (no metadata)")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_INFLATION * path.stat().st_size + (1 << 20):
        raise UsageError(f"checkpoint {str(path)!r} is damaged: its members would inflate to {declared:,} bytes "
                         f"from a {path.stat().st_size:,}-byte file")
    return {info.filename[: -len(".npy")]: info for info in infos}


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype | None = None,
                 shape: tuple[int, ...] | None = None, max_bytes: int | None = None) -> np.ndarray:
    """One .npy member. Its header is read and checked (against `dtype` and `shape`, or a
    1-d size of at most `max_bytes`) before any memory is set aside for its data: numpy's
    own reader allocates whatever a header declares."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if found_dtype.hasobject or found_dtype.kind not in _STATE_KINDS:
            raise UsageError(f"{info.filename} holds {found_dtype} values, not plain numbers")
        if dtype is not None and (found_dtype != dtype or tuple(found_shape) != tuple(shape or ())):
            raise UsageError(f"{info.filename[:-4]} is {found_dtype}{list(found_shape)}, expected {dtype}{list(shape or ())}")
        count = int(np.prod(found_shape, dtype=np.float64))
        if max_bytes is not None and (len(found_shape) != 1 or count * found_dtype.itemsize > max_bytes):
            raise UsageError(f"{info.filename} is {found_dtype}{list(found_shape)}, larger than allowed")
        data = f.read(count * found_dtype.itemsize)
        if len(data) != count * found_dtype.itemsize:
            raise EOFError(f"{info.filename} is cut short")
        array = np.frombuffer(data, dtype=found_dtype).reshape(found_shape, order="F" if fortran else "C")
        return array.copy()


def _read_metadata(path: Path, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    bad = f"{str(path)!r} is not a charseq checkpoint"
    info = members["metadata"]
    if info.file_size > MAX_METADATA_BYTES or info.file_size > MAX_METADATA_INFLATION * info.compress_size + (1 << 16):
        raise UsageError(f"{bad} (its metadata is {info.file_size:,} bytes, from {info.compress_size:,})")
    raw = _read_member(archive, members["metadata"], max_bytes=MAX_METADATA_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise UsageError(f"{bad} (metadata is not JSON bytes)")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(f"{bad} (metadata is not valid JSON, or nested too deeply)") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise UsageError(f"{bad} (wrong format)")
    version = metadata.get("format_version")
    if not schema.is_int(version) or version < 1:
        raise UsageError(f"{bad} (bad format version {version!r})")
    if version > FORMAT_VERSION:
        raise UsageError(f"{str(path)!r} has checkpoint format {version}, newer than this charseq reads "
                         f"({FORMAT_VERSION}); upgrade charseq")
    try:
        (METADATA if version >= 3 else LEGACY_METADATA)(metadata, "metadata")
        if len(set(metadata["vocabulary"])) != len(metadata["vocabulary"]):
            raise schema.Invalid("metadata.vocabulary has a symbol twice")
        if version >= 4:
            lacking = sorted({"options", "package", "params"} - set(metadata["model"]))
            if lacking:
                raise schema.Invalid(f"metadata.model lacks {lacking[0]}")
            bad_names = [n for n in metadata["model"]["params"] if not STATE_NAME.match(n)]
            if bad_names or not metadata["model"]["params"]:
                raise schema.Invalid(f"metadata.model.params names {bad_names[0]!r}" if bad_names
                                     else "metadata.model has no params")
    except schema.Invalid as exc:
        raise UsageError(f"checkpoint {str(path)!r} is damaged: {exc}") from None
    metadata["_bytes"] = raw.tobytes()
    return metadata


def _expected(metadata: dict[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Every array the metadata says the file holds, with its dtype and shape."""
    if metadata["format_version"] >= 4:
        expected = {PARAM_PREFIX + name: (np.dtype(entry["dtype"]), tuple(entry["shape"]))
                    for name, entry in metadata["model"]["params"].items()}
    else:
        if metadata["format_version"] == 3:
            H, dtype = metadata["model"]["hidden_size"], metadata["model"]["dtype"]
        else:
            H, dtype = metadata["hidden_size"], metadata.get("dtype", "float32")
        V = len(metadata["vocabulary"])
        shapes = {"U": (H, V), "W": (H, H), "b": (H,), "V": (V, H), "c": (V,)}
        expected = {name: (np.dtype(dtype), shape) for name, shape in shapes.items()}
    if metadata.get("items") is not None:
        expected[SEEN_ITEMS] = (np.dtype(np.uint64), (metadata["items"]["seen"],))
    for name, entry in (metadata.get("arrays") or {}).items():
        try:
            entry_dtype = np.dtype(entry["dtype"])
        except TypeError:
            entry_dtype = None
        if name in expected or name in _RESERVED or entry_dtype is None or name.startswith(PARAM_PREFIX) or \
                entry_dtype.kind not in _STATE_KINDS or not STATE_NAME.match(name):
            raise UsageError(f"its array manifest lists {name!r} as {entry['dtype']}")
        expected[name] = (entry_dtype, tuple(entry["shape"]))
    return expected


def _read_arrays(path: Path, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
                 metadata: dict[str, Any]) -> dict[str, np.ndarray]:
    bad = f"checkpoint {str(path)!r} is damaged"
    try:
        expected = _expected(metadata)
    except UsageError as exc:
        raise UsageError(f"{bad}: {exc}") from None
    present = set(members) - set(_RESERVED)
    if present != set(expected):
        raise UsageError(f"{bad}: arrays {sorted(present)}, expected {sorted(expected)}")
    arrays = {}
    for name, (dtype, shape) in expected.items():
        size = dtype.itemsize * int(np.prod(shape, dtype=np.float64))
        if not size <= members[name].file_size <= size + _NPY_HEADER_BYTES:
            raise UsageError(f"{bad}: {name} declares {members[name].file_size:,} bytes; "
                             f"{dtype}{list(shape)} takes {size:,}")
        try:
            arrays[name] = _read_member(archive, members[name], dtype, shape)
        except UsageError as exc:
            raise UsageError(f"{bad}: {exc}") from None
    if metadata["format_version"] >= 3:
        if "checksum" not in members or members["checksum"].file_size > _NPY_HEADER_BYTES:
            raise UsageError(f"{bad}: it has no checksum")
        stored = _read_member(archive, members["checksum"], max_bytes=256).tobytes()
        checksum = _digest(arrays, metadata["_bytes"], first=PARAM_NAMES if metadata["format_version"] == 3 else ())
        matches = stored == checksum.encode("ascii")
        seal = _read_member(archive, members["seal"], max_bytes=256).tobytes() if "seal" in members else None
        metadata["_trusted"] = matches and trust.sealed(checksum, seal)
        metadata["_checksum"] = checksum
    else:
        matches = metadata["sha256"] == _legacy_digest(arrays)
    if not matches:
        raise UsageError(f"{bad}: its checksum does not match its contents")
    for name, array in arrays.items():  # a callback's arrays may hold inf (a best value not yet beaten)
        if array.dtype.kind == "f" and not name.startswith("callback.") and not np.isfinite(array).all():
            raise UsageError(f"checkpoint {str(path)!r} holds numbers that are not finite (NaN or infinity in "
                             f"{name}); it cannot be used")
    return arrays


def _checkpoint(path: Path, metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> Checkpoint:
    version = metadata["format_version"]
    vocab = Vocabulary(metadata["vocabulary"])
    state = {name: arrays[name] for name in metadata.get("arrays") or {}}
    if version >= 4:
        model = _model(path, metadata, {name[len(PARAM_PREFIX):]: a for name, a in arrays.items()
                                        if name.startswith(PARAM_PREFIX)})
    else:
        model = VanillaRNN.from_params(arrays)
        if "trainer.h" in state and state["trainer.h"].ndim == 2:  # one layer's (B, H): now (layers, B, H)
            state["trainer.h"] = state["trainer.h"][None]
    if version < 3:  # the training state of format 2 cannot be resumed: it does not describe its run
        return Checkpoint(model, vocab, dict(metadata.get("config") or {}), dict(metadata.get("progress") or {}),
                          metadata.get("corpus"), format_version=version,
                          charseq_version=metadata.get("charseq_version"))
    run = metadata["run"]
    if run is not None:
        try:
            config = RunSpec.from_dict(run).config.to_dict()
        except UsageError as exc:
            raise UsageError(f"checkpoint {str(path)!r} is damaged: its run description: {exc}") from None
    else:
        config = dict(metadata["config"] or {})
    items = metadata.get("items")
    if items is not None and version < 5:
        raise UsageError(f"checkpoint {str(path)!r} is damaged: format {version} has no items")
    if items is not None and items["end"] not in vocab:
        raise UsageError(f"checkpoint {str(path)!r} is damaged: its items' end symbol is not in its vocabulary")
    seen = arrays.get(SEEN_ITEMS)
    if seen is not None and len(seen) > 1 and not (seen[1:] > seen[:-1]).all():
        raise UsageError(f"checkpoint {str(path)!r} is damaged: its item fingerprints are not sorted")
    return Checkpoint(model, vocab, config, dict(metadata["progress"]), metadata["corpus"], run,
                      metadata["training"], state, version, metadata["charseq_version"],
                      trusted=run is not None and metadata.get("_trusted", False), checksum=metadata.get("_checksum"),
                      item_end=None if items is None else items["end"], seen_items=seen)


def _model(path: Path, metadata: dict[str, Any], params: dict[str, np.ndarray]) -> Model:
    """The model a checkpoint records, rebuilt by its plugin and given its parameters."""
    from charseq.hooks.registry import get_registry
    from charseq.models.build import build_model

    recorded = metadata["model"]
    name, package = recorded["name"], recorded.get("package")
    if name not in get_registry().all("model"):
        source = f"the package {package!r}, which provides it" if package else "the plugin that provides it"
        raise UsageError(f"checkpoint {str(path)!r} holds a {name!r} model, which no installed plugin provides; "
                         f"install {source}")
    try:
        model = build_model(name, recorded["options"], len(metadata["vocabulary"]), recorded["hidden_size"], seed=None,
                            dtype=recorded["dtype"])
    except UsageError as exc:
        raise UsageError(f"checkpoint {str(path)!r}: its model cannot be rebuilt here ({exc})") from None
    found = {n: (a.dtype, a.shape) for n, a in params.items()}
    wanted = {n: (v.dtype, v.shape) for n, v in model.params.items()}
    if found != wanted:
        differ = sorted(n for n in set(found) | set(wanted) if found.get(n) != wanted.get(n))
        raise UsageError(f"checkpoint {str(path)!r} is damaged: its {name!r} parameters do not fit the model its "
                         f"options describe ({', '.join(differ[:3])})")
    for n, value in params.items():
        np.copyto(model.params[n], value)  # into the model's own arrays, whatever its mapping does on assignment
    return model


def _digest(arrays: dict[str, np.ndarray], metadata: bytes, first: tuple[str, ...] = ()) -> str:
    """SHA-256 of every array (name, dtype, shape and bytes) and of the metadata's bytes;
    `first` are hashed before the rest (format 3 hashed U W b V c first)."""
    digest = hashlib.sha256()
    for name in [*first, *sorted(set(arrays) - set(first))]:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    digest.update(b"metadata\0")
    digest.update(metadata)
    return digest.hexdigest()


def _legacy_digest(arrays: dict[str, np.ndarray]) -> str:
    """Formats 1 and 2: the arrays only, parameters first."""
    digest = hashlib.sha256()
    for name in [*PARAM_NAMES, *sorted(set(arrays) - set(PARAM_NAMES))]:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return text if len(text) < 120 else text[:117] + "..."
