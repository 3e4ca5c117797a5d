"""The key that seals checkpoints: private, made once and whole, never read from anything
but a private regular file of its size."""

import os
import subprocess
import sys

import pytest

from charseq import trust


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARSEQ_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


def test_the_key_is_made_once_whole_and_private(state):
    first = trust.seal("abc")
    assert first is not None and trust.seal("abc") == first and trust.sealed("abc", first.encode())
    key = state / "run-key"
    assert key.stat().st_size == 32 and key.stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700 and sorted(p.name for p in state.iterdir()) == ["run-key"]


def test_processes_making_the_key_at_once_all_get_the_same_one(state):
    code = "from charseq import trust; print(trust.seal('x'))"
    env = {**os.environ, "CHARSEQ_STATE": str(state)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(12)]
    seals = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(seals) == 1 and "None" not in seals


@pytest.mark.parametrize("plant", ["symlink", "empty", "shared"])
def test_a_key_that_is_not_a_private_file_is_not_trusted(state, plant):
    state.mkdir(mode=0o700)
    key = state / "run-key"
    if plant == "symlink":
        key.symlink_to("/dev/zero")  # would read without end
    elif plant == "empty":
        key.write_bytes(b"")  # a key write that failed half way
        os.chmod(key, 0o600)
    else:
        key.write_bytes(b"k" * 32)
        os.chmod(key, 0o644)  # others may read it, so others may forge with it
    assert not trust.sealed("abc", b"0" * 64)
    made = trust.seal("abc")
    if plant == "empty":  # nothing to lose: a whole key is put in its place
        assert made is not None and key.stat().st_size == 32 and key.stat().st_mode & 0o777 == 0o600
    else:  # the user's to mend (chmod 600, or remove it): until then nothing is sealed, and it says why
        assert made is None and "no usable key" in trust.problem()
        assert key.is_symlink() or key.read_bytes() == b"k" * 32


def test_an_unsealable_checkpoint_warns_once_and_says_why_on_resume(state, tmp_path, monkeypatch):
    import charseq
    from charseq import CharseqWarning, Run

    state.mkdir()
    os.chmod(state, 0o777)  # others may write it: no key is kept there
    monkeypatch.chdir(tmp_path)
    with pytest.warns(CharseqWarning, match="checkpoints are written unsealed"):
        Run.start("alphabet", out="a.npz", epochs=2).fit()
    with pytest.raises(charseq.UsageError, match="no usable key to seal checkpoints with"):
        Run.resume("a.npz", epochs=3)


def test_a_state_directory_others_may_write_is_not_used(state):
    state.mkdir()
    os.chmod(state, 0o777)
    assert trust.seal("abc") is None


def test_an_empty_private_state_directory_is_said_to_have_no_key_yet(state, tmp_path, monkeypatch):
    """A checkpoint from elsewhere, resumed where charseq has made no key yet: the message says
    there is no key yet, not that others may write the directory."""
    import charseq
    from charseq import Run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARSEQ_STATE", str(tmp_path / "elsewhere"))
    Run.start("alphabet", out="a.npz", epochs=2).fit()
    monkeypatch.setenv("CHARSEQ_STATE", str(state))
    state.mkdir(mode=0o700)
    with pytest.raises(charseq.UsageError) as refused:
        Run.resume("a.npz", epochs=3)
    assert "has no key in" in str(refused.value) and "yet" in str(refused.value)
    assert "no one else may write" not in str(refused.value) and "no usable key" not in str(refused.value)
