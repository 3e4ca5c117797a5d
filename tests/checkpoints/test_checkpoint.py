"""Checkpoints are data, checked before use: whole, under one checksum (metadata included),
every field type-checked, member sizes checked before anything is inflated, finite
weights only; and files from charseq 0.1 still load for generate and eval."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import charseq
from charseq import Checkpoint, UsageError, VanillaRNN, Vocabulary
from charseq.checkpoints import format as checkpoint
from charseq.models.rnn import PARAM_NAMES
from conftest import members_of, resign, run_cli

DATA = Path(__file__).resolve().parents[1] / "fixtures"


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
        assert sorted(data.files) == sorted([*(f"param.{n}" for n in PARAM_NAMES), "metadata", "checksum"])
        metadata = json.loads(data["metadata"].tobytes())
    assert metadata["format"] == "charseq-checkpoint" and metadata["format_version"] == checkpoint.FORMAT_VERSION == 5
    assert metadata["model"]["name"] == "rnn" and metadata["model"]["options"] == {"layers": 1}
    assert metadata["model"]["package"] is None  # bundled
    assert metadata["vocabulary"] == ["a", "b", "c"]


def test_save_leaves_no_temporary_files_and_honours_the_umask(saved, tmp_path):
    path, model, vocab = saved
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]
    previous = os.umask(0o027)
    try:
        checkpoint.save(tmp_path / "u.npz", Checkpoint(model, vocab))
    finally:
        os.umask(previous)
    assert (tmp_path / "u.npz").stat().st_mode & 0o777 == 0o640
    assert path.stat().st_mode & 0o777 == 0o666 & ~previous


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "ctrl-c"])
def test_a_failed_write_keeps_the_old_checkpoint(saved, monkeypatch, failure):
    path, model, vocab = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise failure

    monkeypatch.setattr(os, "fsync", crash)
    expected = charseq.SaveError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        checkpoint.save(path, Checkpoint(VanillaRNN(3, 4, seed=9), vocab))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]


def test_save_never_replaces_a_device_or_a_directory(tmp_path, saved):
    _, model, vocab = saved
    (tmp_path / "dir.npz").mkdir()
    for target in (tmp_path / "dir.npz", Path("/dev/null")):
        with pytest.raises(charseq.SaveError, match="not a regular file"):
            checkpoint.save(target, Checkpoint(model, vocab))
    assert Path("/dev/null").is_char_device() and (tmp_path / "dir.npz").is_dir()


def test_truncated_text_and_missing_files_are_refused(saved, tmp_path):
    path, _, _ = saved
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    notes = tmp_path / "notes.npz"
    notes.write_text("hello")
    for bad in (path, notes):
        with pytest.raises(UsageError, match="not a charseq checkpoint"):
            charseq.load(bad)
    with pytest.raises(UsageError, match="does not exist"):
        charseq.load(tmp_path / "nope.npz")
    with pytest.raises(UsageError, match="is a directory"):
        charseq.load(tmp_path)


def _unsigned(path, **changes):
    """Re-save a checkpoint's members with some replaced, without fixing the checksum."""
    arrays = members_of(path)
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_changed_weights_fail_the_checksum(saved):
    path, model, _ = saved
    _unsigned(path, **{"param.W": model.params["W"] + 1})
    with pytest.raises(UsageError, match="checksum"):
        charseq.load(path)


def test_the_metadata_is_under_the_checksum(alphabet_checkpoint, tmp_path):
    """A swapped vocabulary would load and permute every prediction: it is refused."""
    path = tmp_path / "swapped.npz"
    path.write_bytes(alphabet_checkpoint.read_bytes())
    metadata = json.loads(members_of(path)["metadata"].tobytes())
    metadata["vocabulary"] = metadata["vocabulary"][::-1]
    _unsigned(path, metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8))
    result = run_cli("generate", path, "--prime", "ABC", ok=False)
    assert result.exit_code == 2 and "checksum does not match" in result.stderr


def test_newer_and_foreign_formats_are_refused(saved):
    path, _, _ = saved
    resign(path, lambda m: m.update(format_version=99))
    with pytest.raises(UsageError, match="format 99.*upgrade charseq"):
        charseq.load(path)
    resign(path, lambda m: m.update(format="something-else", format_version=3))
    with pytest.raises(UsageError, match="wrong format"):
        charseq.load(path)


def test_state_arrays_round_trip_under_the_checksum(saved, tmp_path):
    _, model, vocab = saved
    state = {"optimizer.m": np.arange(5, dtype=np.float32), "optimizer.t": np.array([7], dtype=np.int64)}
    path = checkpoint.save(tmp_path / "s.npz", Checkpoint(model, vocab, arrays=state))
    loaded = charseq.load(path)
    assert set(loaded.arrays) == set(state)
    assert all(np.array_equal(loaded.arrays[n], state[n]) and loaded.arrays[n].dtype == state[n].dtype for n in state)
    _unsigned(path, **{"optimizer.m": state["optimizer.m"] + 1})
    with pytest.raises(UsageError, match="checksum"):
        charseq.load(path)


def test_arrays_must_match_the_manifest(saved, tmp_path):
    _, model, vocab = saved
    path = checkpoint.save(tmp_path / "s.npz", Checkpoint(model, vocab, arrays={"optimizer.m": np.zeros(5, np.float32)}))
    resign(path, arrays={"optimizer.m": np.zeros(6, dtype=np.float32)})
    with pytest.raises(UsageError, match=r"optimizer.m .*expected float32\[5\]|declares"):
        charseq.load(path)
    resign(path, arrays={"optimizer.m": np.zeros(5, dtype=np.float32), "extra": np.zeros(1)})
    with pytest.raises(UsageError, match="expected"):
        charseq.load(path)


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
        np.savez(f, **{name: evil for name in [*PARAM_NAMES, "metadata", "checksum"]}, allow_pickle=True)
    for candidate in (path, evil_alone):
        with pytest.raises(UsageError):
            charseq.load(candidate)
    assert not marker.exists()


# -- hostile metadata with a valid checksum: every field is checked -------------------------


def _deep(depth):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


def _set(path, value):
    """A metadata change: set the field at `path` (keys and indexes) to `value`."""
    def change(metadata):
        target = metadata
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


BAD_FIELDS = [
    ("vocabulary a string", ("vocabulary",), "ABC"),
    ("vocabulary of numbers", ("vocabulary",), list(range(26))),
    ("vocabulary with a long symbol", ("vocabulary", 0), "AB"),
    ("vocabulary with a symbol twice", ("vocabulary", 1), "A"),
    ("hidden size as text", ("model", "hidden_size"), "64"),
    ("hidden size negative", ("model", "hidden_size"), -64),
    ("hidden size absurd", ("model", "hidden_size"), 10**9),
    ("hidden size a boolean", ("model", "hidden_size"), True),
    ("unknown dtype", ("model", "dtype"), "float16"),
    ("unknown model", ("model", "name"), "transformer"),
    ("format version as text", ("format_version",), "3"),
    ("corpus a number", ("corpus",), 5),
    ("progress a list", ("progress",), [1, 2]),
    ("progress nested", ("progress", "loss"), {"a": 1}),
    ("run a list", ("run",), []),
    ("run id a number", ("run", "id"), 7),
    ("run out relative", ("run", "out"), "m.npz"),
    ("run out with a NUL", ("run", "out"), "/tmp/a\x00b.npz"),
    ("run setting of the wrong type", ("run", "config", "lr"), "fast"),
    ("run setting out of range", ("run", "config", "epochs"), 0),
    ("run setting missing", ("run", "config"), {"lr": 0.1}),
    ("run callbacks not a list", ("run", "callbacks"), "early-stopping"),
    ("run callback options nested", ("run", "callbacks"), [{"name": "metrics", "options": {"path": {"a": 1}}}]),
    ("step negative", ("training", "step"), -1),
    ("step as text", ("training", "step"), "2700"),
    ("random state of another generator", ("training", "rng", "bit_generator"), "MT19937"),
    ("random state too large", ("training", "rng", "state", "state"), 2**200),
    ("history not a list", ("training", "history"), "none"),
    ("history entry with text", ("training", "history", 0, "loss"), "low"),
    ("stop flag as text", ("training", "stop_training"), "yes"),
    ("wall time negative", ("training", "wall_time"), -5.0),
    ("callback state nested deep", ("training", "callbacks"), {"x": {"y": _deep(100)}}),
    ("array manifest of objects", ("arrays",), {"optimizer.x": {"dtype": "object", "shape": [1]}}),
    ("array manifest with a negative size", ("arrays",), {"optimizer.x": {"dtype": "float32", "shape": [-1]}}),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resumable alphabet checkpoint of 3 epochs."""
    out = tmp_path_factory.mktemp("trained") / "a.npz"
    run_cli("train", "--corpus", "alphabet", "--epochs", 3, "--out", out, "-q", "--sample-length", 0)
    return out


@pytest.mark.parametrize("what,field,value", BAD_FIELDS, ids=[case[0] for case in BAD_FIELDS])
def test_every_metadata_field_is_checked(trained, tmp_path, what, field, value):
    path = tmp_path / "bad.npz"
    path.write_bytes(trained.read_bytes())
    resign(path, _set(field, value))
    for command in (["generate", path, "--length", 3], ["eval", path, "--corpus", "alphabet"],
                    ["train", "--resume", path, "-q"]):
        result = run_cli(*command, ok=False)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr, result.stderr
        assert "Traceback" not in result.output


def test_json_nested_beyond_the_parser_is_one_line(trained, tmp_path):
    path = tmp_path / "deep.npz"
    path.write_bytes(trained.read_bytes())
    resign(path, raw_metadata=b"[" * 200_000 + b"]" * 200_000)
    result = run_cli("generate", path, ok=False)
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


@pytest.mark.parametrize("name,value", [("param.W", np.nan), ("param.b", np.inf), ("optimizer.t", None)])
def test_weights_that_are_not_finite_are_refused(tmp_path, name, value):
    out = tmp_path / "a.npz"
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--optimizer", "adam", "--out", out, "-q",
            "--sample-length", 0)
    arrays = members_of(out)
    if value is None:  # an Adam moment instead of a weight
        name = "optimizer.v"
        value = np.nan
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = value
    resign(out, arrays={name: arrays[name]})
    for command in (["generate", out], ["eval", out, "--corpus", "alphabet"], ["train", "--resume", out]):
        result = run_cli(*command, ok=False)
        assert result.exit_code == 2 and "not finite" in result.stderr and name in result.stderr, result.stderr


def _bomb(path: Path, gigabytes: float) -> None:
    """A checkpoint whose metadata claims H=16384 and whose W member really inflates to
    16384 x 16384 float32 (1 GiB) of zeros, from about a megabyte."""
    H = 16384
    metadata = {"format": "charseq-checkpoint", "format_version": 3, "charseq_version": "0.2.0",
                "vocabulary": ["a"], "model": {"name": "rnn", "hidden_size": H, "dtype": "float32"},
                "corpus": None, "config": {}, "run": None, "progress": {}, "training": None, "arrays": {}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("metadata.npy", _npy(np.frombuffer(json.dumps(metadata).encode(), np.uint8)))
        with archive.open("W.npy", "w", force_zip64=True) as member:
            header = io.BytesIO()
            np.lib.format.write_array_header_2_0(header, {"descr": "<f4", "fortran_order": False, "shape": (H, H)})
            member.write(header.getvalue())
            chunk = bytes(1 << 24)
            for _ in range(int(gigabytes * (1 << 30)) // len(chunk)):
                member.write(chunk)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
    bomb = tmp_path / "bomb.npz"
    _bomb(bomb, 1)
    assert bomb.stat().st_size < 8 << 20
    # The peak of this process's own memory: VmHWM where Linux has it (ru_maxrss can carry the
    # parent's peak across a vfork and exec, and pytest's grows with the tests before this one).
    code = ("import os, resource, charseq\n"
            "try:\n    charseq.load('bomb.npz')\nexcept charseq.UsageError as e:\n    print(e)\n"
            "status = '/proc/self/status'\n"
            "hwm = [l.split()[1] for l in open(status) if l.startswith('VmHWM')] if os.path.exists(status) else []\n"
            "print(hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    message, peak_kb = result.stdout.splitlines()
    assert "would inflate to" in message
    assert int(peak_kb) < 400_000, f"peak RSS {int(peak_kb) // 1024} MB"  # the 1 GiB was never made


# -- checkpoints from charseq 0.1 ------------------------------------------------------------


def test_a_checkpoint_from_charseq_0_1_still_generates_and_evaluates(tmp_path):
    """tests/fixtures/alphabet-0.1.0.npz was written by charseq 0.1.0 (checkpoint format 2)."""
    old = DATA / "alphabet-0.1.0.npz"
    result = run_cli("generate", old, "--prime", "ABCDEF", "--length", 20, "--sampler", "argmax")
    assert result.output == "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    loss = json.loads(run_cli("eval", old, "--corpus", "alphabet", "--json").output)["loss"]
    assert loss < 0.01
    text = json.loads(run_cli("eval", DATA / "play-0.1.0.npz", "--corpus", f"text:{DATA / 'play.txt'}",
                              "--json").output)
    assert 0 < text["loss"] < 2.5


def test_a_checkpoint_from_charseq_0_1_cannot_resume_and_says_why(tmp_path):
    copy = tmp_path / "old.npz"
    copy.write_bytes((DATA / "alphabet-0.1.0.npz").read_bytes())
    result = run_cli("train", "--resume", copy, ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "charseq 0.1.0 (checkpoint format 2), which did not record its run" in result.stderr
    assert "works with generate and eval" in result.stderr
    assert copy.read_bytes() == (DATA / "alphabet-0.1.0.npz").read_bytes()



# -- checkpoints from charseq 0.2 (format 3: the vanilla RNN before models were plugins) ------


def test_a_checkpoint_from_charseq_0_2_still_generates_and_evaluates():
    """tests/fixtures/alphabet-0.2.0.npz was written by charseq 0.2.0 (checkpoint format 3)."""
    old = DATA / "alphabet-0.2.0.npz"
    assert charseq.load(old).format_version == 3 and charseq.load(old).model.name == "rnn"
    result = run_cli("generate", old, "--prime", "ABCDEF", "--length", 20, "--sampler", "argmax")
    assert result.output == "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    assert json.loads(run_cli("eval", old, "--corpus", "alphabet", "--json").output)["loss"] < 0.01


def _same_run(resumed, today):
    """The run an earlier release began, resumed today, ends where the same run started today
    ends, to float32 rounding: the step count, data, schedule and optimizer state carry over
    exactly, but the earlier release's first steps rounded as its arithmetic did (0.7 sums
    some gradients in another order), and three epochs of training carry the last bits up
    to about 3e-5 of a weight matrix's norm here; a run trained differently misses by far more."""
    for name, value in today.model.params.items():
        error = np.linalg.norm(resumed.model.params[name] - value) / np.linalg.norm(value)
        assert error < 1e-3, f"{name}: relative difference {error:.1e}"


def test_a_run_from_charseq_0_2_resumes_where_todays_run_ends(tmp_path):
    """tests/fixtures/play-0.2.0.npz is a 0.2.0 run on play.txt interrupted part way through its
    first epoch (its carried state one layer's (B, H)). It was sealed by another key, so it
    resumes as a file from elsewhere, and ends where a run started today ends."""
    copy = tmp_path / "old.npz"
    copy.write_bytes((DATA / "play-0.2.0.npz").read_bytes())
    assert charseq.load(copy).arrays["trainer.h"].shape == (1, 4, 16)
    play = f"text:{DATA / 'play.txt'}"
    run_cli("train", "--resume", copy, "--corpus", play, "--out", tmp_path / "resumed.npz", "-q", "--sample-length", 0,
            "--model", "rnn")  # its own model, named: 0.2 recorded none of its options
    # 0.2.0's text defaults, where they are not today's
    run_cli("train", "--corpus", play, "--model", "rnn", "--lr", 0.002, "--dropout", 0.2, "--input-lr-scale", 80,
            "--hidden-size", 16, "--seq-len", 8, "--batch-size", 4, "--epochs", 3, "--out", tmp_path / "today.npz", "-q", "--sample-length", 0)
    resumed, today = charseq.load(tmp_path / "resumed.npz"), charseq.load(tmp_path / "today.npz")
    assert resumed.training["step"] == today.training["step"] and resumed.format_version == checkpoint.FORMAT_VERSION
    _same_run(resumed, today)
    assert copy.read_bytes() == (DATA / "play-0.2.0.npz").read_bytes()


# -- checkpoints from charseq 0.3 (format 4: models as plugins, before corpora of items) ------


def test_a_checkpoint_from_charseq_0_3_still_generates_and_evaluates():
    """tests/fixtures/alphabet-0.3.0.npz was written by charseq 0.3.0 (checkpoint format 4)."""
    old = DATA / "alphabet-0.3.0.npz"
    saved = charseq.load(old)
    assert (saved.format_version, saved.charseq_version, saved.item_end) == (4, "0.3.0", None)
    result = run_cli("generate", old, "--prime", "ABCDEF", "--length", 20, "--sampler", "argmax")
    assert result.output == "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    assert json.loads(run_cli("eval", old, "--corpus", "alphabet", "--json").output)["loss"] < 0.01


def test_a_run_from_charseq_0_3_resumes_where_todays_run_ends(tmp_path):
    """tests/fixtures/play-0.3.0.npz is a 0.3.0 run of two GRU layers on play.txt, interrupted at
    step 7 of its first epoch; resumed today it ends where the same run started today ends."""
    copy = tmp_path / "old.npz"
    copy.write_bytes((DATA / "play-0.3.0.npz").read_bytes())
    play = f"text:{DATA / 'play.txt'}"
    run_cli("train", "--resume", copy, "--corpus", play, "--out", tmp_path / "resumed.npz", "-q", "--sample-length", 0)
    run_cli("train", "--corpus", play, "--model", "gru:layers=2", "--hidden-size", 16, "--seq-len", 8, "--batch-size", 4,
            "--dropout", 0.1, "--input-lr-scale", 80, "--epochs", 3, "--out", tmp_path / "today.npz", "-q", "--sample-length", 0)
    resumed, today = charseq.load(tmp_path / "resumed.npz"), charseq.load(tmp_path / "today.npz")
    assert resumed.training["step"] == today.training["step"] and resumed.format_version == 5
    _same_run(resumed, today)
    assert copy.read_bytes() == (DATA / "play-0.3.0.npz").read_bytes()


def test_a_newer_checkpoint_format_is_refused_in_one_line_that_says_upgrade(alphabet_checkpoint, tmp_path):
    path = tmp_path / "future.npz"
    path.write_bytes(alphabet_checkpoint.read_bytes())
    resign(path, lambda m: m.update(format_version=checkpoint.FORMAT_VERSION + 1))
    result = run_cli("generate", path, ok=False)
    assert result.exit_code == 2 and "upgrade charseq" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("options", [{"seed": 1}, {"spec": "x"}, {"hidden_size": 4}, {"dtype": "float64"},
                                     {"layers": 0}, {"depth": 2}])
def test_a_model_record_with_options_that_do_not_fit_is_refused(alphabet_checkpoint, tmp_path, options):
    path = tmp_path / "m.npz"
    path.write_bytes(alphabet_checkpoint.read_bytes())
    resign(path, lambda m: m["model"].update(options=options))
    before = path.read_bytes()
    for command in (["generate", path], ["eval", path, "--corpus", "alphabet"], ["train", "--resume", path]):
        result = run_cli(*command, ok=False)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "its model cannot be rebuilt here" in result.stderr, result.stderr
    assert path.read_bytes() == before
