import io
import json
import os
import zipfile

import numpy as np
import pytest

import charseq
from charseq import Checkpoint, UsageError, VanillaRNN, Vocabulary, checkpoint
from charseq.model import PARAM_NAMES


@pytest.fixture
def saved(tmp_path):
    vocab = Vocabulary("abc")
    model = VanillaRNN(3, 4, seed=5)
    model.params["b"] += 0.25
    path = checkpoint.save(tmp_path / "m.npz", Checkpoint(model, vocab, {"lr": 0.1}, {"epoch": 3}, "abc"))
    return path, model, vocab


def test_round_trip_keeps_everything(saved):
    path, model, vocab = saved
    loaded = charseq.load(path)
    assert loaded.vocab == vocab and loaded.config == {"lr": 0.1}
    assert loaded.progress == {"epoch": 3} and loaded.corpus == "abc"
    for name in PARAM_NAMES:
        assert loaded.model.params[name].dtype == np.float32
        assert np.array_equal(loaded.model.params[name], model.params[name])


def test_file_is_plain_arrays_readable_without_pickle(saved):
    path, _, _ = saved
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted([*PARAM_NAMES, "metadata"])
        metadata = json.loads(data["metadata"].tobytes())
    assert metadata["format"] == "charseq-checkpoint" and metadata["format_version"] == checkpoint.FORMAT_VERSION
    assert metadata["vocabulary"] == ["a", "b", "c"]


def test_save_leaves_no_temporary_files(saved):
    path, _, _ = saved
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]


def test_failed_write_keeps_the_old_checkpoint(saved, monkeypatch):
    path, model, vocab = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, Checkpoint(VanillaRNN(3, 4, seed=9), vocab))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]


def test_ctrl_c_while_saving_keeps_the_old_checkpoint(saved, monkeypatch):
    path, model, vocab = saved
    before = path.read_bytes()

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", pressed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, Checkpoint(VanillaRNN(3, 4, seed=9), vocab))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]


def _rewrite(path, **changes):
    """Re-save a checkpoint's members with some replaced (None removes one)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _metadata_with(path, **fields):
    with np.load(path) as data:
        metadata = json.loads(data["metadata"].tobytes())
    metadata.update(fields)
    return np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)


def test_truncated_file_is_refused(saved):
    path, _, _ = saved
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UsageError, match="not a charseq checkpoint"):
        charseq.load(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(UsageError, match="not a charseq checkpoint"):
        charseq.load(path)


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        charseq.load(tmp_path / "nope.npz")
    with pytest.raises(UsageError, match="is a directory"):
        charseq.load(tmp_path)


def test_changed_weights_fail_the_checksum(saved):
    path, model, _ = saved
    _rewrite(path, W=model.params["W"] + 1)
    with pytest.raises(UsageError, match="checksum"):
        charseq.load(path)


def test_wrong_shape_or_dtype_is_refused(saved):
    path, model, _ = saved
    _rewrite(path, c=model.params["c"].astype(np.float64))
    with pytest.raises(UsageError, match="c is float64"):
        charseq.load(path)


def test_missing_array_is_refused(saved):
    path, _, _ = saved
    _rewrite(path, V=None)
    with pytest.raises(UsageError, match="expected"):
        charseq.load(path)


def test_newer_format_asks_for_an_upgrade(saved):
    path, _, _ = saved
    _rewrite(path, metadata=_metadata_with(path, format_version=99))
    with pytest.raises(UsageError, match="format 99.*upgrade charseq"):
        charseq.load(path)


def test_other_format_is_refused(saved):
    path, _, _ = saved
    _rewrite(path, metadata=_metadata_with(path, format="something-else"))
    with pytest.raises(UsageError, match="wrong format"):
        charseq.load(path)


def test_state_arrays_round_trip_under_the_checksum(saved, tmp_path):
    _, model, vocab = saved
    state = {"optimizer.m": np.arange(5, dtype=np.float32), "optimizer.t": np.array([7], dtype=np.int64)}
    path = checkpoint.save(tmp_path / "s.npz", Checkpoint(model, vocab, training={"step": 7}, arrays=state))
    loaded = charseq.load(path)
    assert loaded.resumable and loaded.training == {"step": 7}
    assert set(loaded.arrays) == set(state)
    assert all(np.array_equal(loaded.arrays[n], state[n]) and loaded.arrays[n].dtype == state[n].dtype for n in state)
    _rewrite(path, **{"optimizer.m": state["optimizer.m"] + 1})
    with pytest.raises(UsageError, match="checksum"):
        charseq.load(path)


def test_state_arrays_must_match_the_manifest(saved, tmp_path):
    _, model, vocab = saved
    state = {"optimizer.m": np.zeros(5, dtype=np.float32)}
    path = checkpoint.save(tmp_path / "s.npz", Checkpoint(model, vocab, training={}, arrays=state))
    _rewrite(path, **{"optimizer.m": np.zeros(6, dtype=np.float32)})
    with pytest.raises(UsageError, match="manifest"):
        charseq.load(path)
    _rewrite(path, **{"optimizer.m": np.zeros(5, dtype=np.float32), "extra": np.zeros(1)})
    with pytest.raises(UsageError, match="expected"):
        charseq.load(path)


def test_a_version_1_checkpoint_loads_but_cannot_resume(saved):
    path, model, _ = saved
    with np.load(path) as data:
        metadata = json.loads(data["metadata"].tobytes())
    for key in ("training", "arrays", "corpus_spec", "corpus_options"):
        metadata.pop(key)
    metadata["format_version"] = 1
    _rewrite(path, metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8))
    loaded = charseq.load(path)
    assert not loaded.resumable
    assert np.array_equal(loaded.model.params["W"], model.params["W"])


class _Detonator:
    """Unpickling this calls os.system: proof that code ran if the marker file appears."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_pickle_bearing_file_is_refused_and_runs_nothing(saved, tmp_path):
    path, _, _ = saved
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Detonator(marker)
    buffer = io.BytesIO()
    np.save(buffer, evil, allow_pickle=True)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("metadata.npy", buffer.getvalue())  # a second, pickled metadata member
    evil_alone = tmp_path / "evil.npz"
    with open(evil_alone, "wb") as f:
        np.savez(f, **{name: evil for name in [*PARAM_NAMES, "metadata"]}, allow_pickle=True)
    for candidate in (path, evil_alone):
        with pytest.raises(UsageError):
            charseq.load(candidate)
    assert not marker.exists()
