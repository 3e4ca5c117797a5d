"""A run never destroys a file: it refuses to replace what is not its own, never writes
over an input, a directory or a device, deletes only files it wrote itself, and no path
read from a checkpoint makes it write or delete anything else."""

import os
import signal
import stat
from pathlib import Path

import pytest

import charseq
from charseq import Run, hookimpl
from conftest import InterruptAt, resign, run_cli

FAST = ["--epochs", 2, "-q", "--sample-length", 0]


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the cat sat on the mat. " * 200)
    return tmp_path


TEXT = ["--corpus", "text:notes.txt", "--hidden-size", 16, "--seq-len", 8, "--batch-size", 4]


def test_a_new_run_never_replaces_a_checkpoint_it_did_not_write(place):
    run_cli("train", "--corpus", "alphabet", "--out", "m.npz", *FAST)
    before = (place / "m.npz").read_bytes()
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", *FAST, ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--out 'm.npz' holds a checkpoint of another run (to continue that run: charseq train --resume m.npz)" \
        in result.stderr and "--force to replace it" in result.stderr
    assert (place / "m.npz").read_bytes() == before
    run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--force", *FAST)
    assert (place / "m.npz").read_bytes() != before


def test_a_forgotten_resume_and_ctrl_c_cannot_replace_a_trained_model(place, alphabet_checkpoint):
    """The user meant `--resume m.npz`, typed the first command again, and pressed Ctrl-C:
    the run was refused before it began, so there was nothing to save over the model."""
    (place / "m.npz").write_bytes(alphabet_checkpoint.read_bytes())

    class CtrlC:
        @hookimpl
        def on_step_end(self, trainer, step):
            if step == 15:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(charseq.UsageError, match="holds a checkpoint of another run"):
        Run.start("alphabet", out="m.npz", extra_callbacks=[CtrlC()]).fit()
    assert (place / "m.npz").read_bytes() == alphabet_checkpoint.read_bytes()


def test_other_files_are_not_replaced_either(place):
    (place / "m.npz").write_text("my notes, not a checkpoint")
    (place / "log.jsonl").write_text('{"step": 1, "loss": 2}\n')
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", *FAST, ok=False)
    assert result.exit_code == 2 and "'m.npz' already exists and is not this run's" in result.stderr
    result = run_cli("train", "--corpus", "alphabet", "--out", "new.npz", "--metrics", "log.jsonl", *FAST, ok=False)
    assert result.exit_code == 2 and "'log.jsonl' already exists and is not this run's" in result.stderr
    assert (place / "m.npz").read_text() == "my notes, not a checkpoint" and not (place / "new.npz").exists()


@pytest.mark.parametrize("args,words", [
    (["--out", "notes.txt"], "--out 'notes.txt' is one of the run's inputs"),
    (["--metrics", "notes.txt"], "callback 'metrics' option path 'notes.txt' is one of the run's inputs"),
    (["--metrics", "m.npz", "--out", "m.npz"], "name the same file 'm.npz'"),
    (["--out", "/dev/null"], "--out '/dev/null' lies in /dev"),
    (["--metrics", "/dev/null"], "'/dev/null' lies in /dev"),
    (["--out", "."], "--out '.' is a directory"),
    (["--callback", "checkpoint:path=notes.{epoch}", "--out", "m.npz"], "could write over 'notes.txt', one of the "
                                                                         "run's inputs"),
    (["--callback", "checkpoint:path=notes.{epoch}"], "could write over --out 'notes.npz'"),
])
def test_no_output_may_be_an_input_a_device_or_another_output(place, args, words):
    result = run_cli("train", *TEXT, *args, *FAST, ok=False)
    assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert (place / "notes.txt").read_text().startswith("the cat")


def test_a_resumed_run_cannot_write_its_metrics_over_the_checkpoint_it_resumes(place):
    run_cli("train", *TEXT, "--out", "a.npz", *FAST)
    before = (place / "a.npz").read_bytes()
    result = run_cli("train", "--resume", "a.npz", "--out", "b.npz", "--metrics", "a.npz", "--epochs", 3, "-q",
                     ok=False)
    assert result.exit_code == 2 and "'a.npz' is one of the run's inputs" in result.stderr
    assert (place / "a.npz").read_bytes() == before and not (place / "b.npz").exists()


def test_a_pipe_is_not_an_output(place):
    os.mkfifo(place / "fifo")
    result = run_cli("train", *TEXT, "--out", "fifo", *FAST, ok=False)
    assert result.exit_code == 2 and "'fifo' is a pipe" in result.stderr


def test_files_get_the_permissions_the_umask_gives(place):
    previous = os.umask(0o027)
    try:
        run_cli("train", *TEXT, "--out", "m.npz", "--metrics", "m.jsonl", *FAST)
    finally:
        os.umask(previous)
    for name in ("m.npz", "m.jsonl"):
        assert stat.S_IMODE((place / name).stat().st_mode) == 0o640, name


def test_a_template_that_matches_another_runs_files_is_refused(place):
    run_cli("train", "--corpus", "alphabet", "--out", "a.npz", "--callback", "checkpoint:path=runs/ck-{epoch}.npz",
            *FAST)
    assert sorted(p.name for p in (place / "runs").iterdir()) == ["ck-1.npz", "ck-2.npz"]  # the directory was made
    result = run_cli("train", "--corpus", "alphabet", "--out", "b.npz", "--callback",
                     "checkpoint:path=runs/ck-{epoch}.npz", *FAST, ok=False)
    assert result.exit_code == 2 and "could write over 'runs/ck-1.npz', which holds a checkpoint of another run" \
        in result.stderr
    run_cli("train", "--corpus", "alphabet", "--out", "b.npz", "--callback", "checkpoint:path=runs/ck-{epoch}.npz",
            "--force", *FAST)




def test_keep_last_deletes_only_files_this_process_wrote(place):
    """The first process keeps its newest 2; after a resume, the second deletes only its own,
    and leaves the first process's files where they are."""
    template = "ck-{epoch:02d}.npz"
    first = Run.start("digits:40", out="m.npz", callbacks=[f"checkpoint:path={template},keep_last=2"],
                      extra_callbacks=[InterruptAt(8 * 3 + 2)], epochs=8, batch_size=5).fit()
    assert first.status == "interrupted"
    assert sorted(p.name for p in place.glob("ck-*")) == ["ck-02.npz", "ck-03.npz"]
    Run.resume("m.npz").fit()
    assert sorted(p.name for p in place.glob("ck-*")) == ["ck-02.npz", "ck-03.npz", "ck-07.npz", "ck-08.npz"]


def _crafted(source, target, change=None, arrays=None):
    target.write_bytes(source.read_bytes())
    resign(target, change, arrays)
    return target


def test_a_crafted_checkpoint_cannot_make_a_resume_write_or_delete_elsewhere(place, tmp_path_factory):
    """A checkpoint from someone else names paths in its run description and callback state;
    none of them makes charseq replace or delete a file that is not the run's own."""
    victims = tmp_path_factory.mktemp("victims")
    (victims / "ck-001.npz").write_text("precious")
    (victims / "report.txt").write_text("precious")
    run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", "checkpoint:path=ck-{epoch}.npz,keep_last=1",
            *FAST)
    saved = place / "m.npz"

    def aim(metadata):
        metadata["run"]["out"] = str(victims / "report.txt")
        metadata["run"]["callbacks"][0]["options"]["path"] = str(victims / "ck-{epoch:03d}.npz")
        metadata["training"]["callbacks"]["checkpoint"]["saved"] = [str(victims / "report.txt")]

    evil = _crafted(saved, place / "evil.npz", aim)
    result = run_cli("train", "--resume", evil, "--epochs", 4, "-q", ok=False)
    assert result.exit_code == 2 and "give it with --corpus" in result.stderr  # its recorded corpus is not read
    result = run_cli("train", "--resume", evil, "--corpus", "alphabet", "--epochs", 4, "-q", ok=False)
    assert result.exit_code == 2 and "the --out it records is not used; give --out" in result.stderr
    result = run_cli("train", "--resume", evil, "--corpus", "alphabet", "--out", evil, "--epochs", 4, "-q",
                     "--sample-length", 0)
    assert "its callbacks that write files (checkpoint) are left out" in result.stderr
    assert (victims / "report.txt").read_text() == "precious" and (victims / "ck-001.npz").read_text() == "precious"
    assert sorted(p.name for p in victims.iterdir()) == ["ck-001.npz", "report.txt"]  # nothing new there either
    assert charseq.load(evil).training["epoch"] == 4  # it wrote the file it was resumed from, and only that
    # Given again here, a callback writes where it is told now, and deletes only what it wrote itself.
    def aim_state(metadata):
        metadata["training"]["callbacks"]["checkpoint"]["saved"] = [str(victims / "report.txt"),
                                                                    str(victims / "ck-001.npz")]

    evil = _crafted(saved, place / "evil2.npz", aim_state)
    run_cli("train", "--resume", evil, "--corpus", "alphabet", "--epochs", 4, "--out", "ok.npz",
            "--callback", "checkpoint:path=new-{epoch}.npz,keep_last=1", "-q", "--sample-length", 0)
    assert (victims / "report.txt").read_text() == "precious" and (victims / "ck-001.npz").read_text() == "precious"
    assert sorted(p.name for p in place.glob("*-*.npz")) == ["ck-2.npz", "new-4.npz"]
    # What it wrote is sealed with the paths given here only: resumed again, it trusts nothing recorded before.
    assert charseq.load(place / "ok.npz").trusted and charseq.load(place / "ok.npz").run["callbacks"][0][
        "options"]["path"] == str(place / "new-{epoch}.npz")


def test_a_forged_run_id_cannot_make_a_resume_replace_that_runs_model(place):
    """The id of a victim's run is readable in its checkpoint; copying it into a crafted
    checkpoint does not make the victim's files replaceable: the crafted file is not sealed
    by this charseq's key, so none of the paths it records is used."""
    run_cli("train", "--corpus", "alphabet", "--epochs", 6, "--out", "victim.npz", "-q", "--sample-length", 0)
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", "base.npz", "-q", "--sample-length", 0)
    victim_id = charseq.load(place / "victim.npz").run["id"]
    before = (place / "victim.npz").read_bytes()

    def forge(metadata):
        metadata["run"]["id"] = victim_id
        metadata["run"]["out"] = str(place / "victim.npz")
        metadata["run"]["parents"] = [{"id": victim_id, "step": 10**9}]  # "I branched from it, later", it claims

    evil = _crafted(place / "base.npz", place / "forged.npz", forge)
    run_cli("train", "--resume", evil, "--corpus", "alphabet", "--out", evil, "--epochs", 8, "-q", "--sample-length", 0)
    assert (place / "victim.npz").read_bytes() == before
    result = run_cli("train", "--resume", evil, "--corpus", "alphabet", "--epochs", 9, "--out", "victim.npz", "-q",
                     ok=False)  # named here, the victim is still another line's work
    assert result.exit_code == 2 and (place / "victim.npz").read_bytes() == before


def test_a_seal_covers_the_whole_checkpoint_and_its_key_is_private(place):
    """Editing anything in a sealed checkpoint (even with a valid checksum) unseals it, and a
    key another user could write is not used."""
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", "m.npz", "-q", "--sample-length", 0)
    assert charseq.load(place / "m.npz").trusted
    edited = _crafted(place / "m.npz", place / "e.npz", lambda m: m["training"].update(epoch=1))
    assert not charseq.load(edited).trusted
    key = Path(os.environ["CHARSEQ_STATE"]) / "run-key"
    os.chmod(key, 0o644)
    try:
        assert not charseq.load(place / "m.npz").trusted
    finally:
        os.chmod(key, 0o600)
    assert charseq.load(place / "m.npz").trusted


def test_a_checkpoint_that_appears_during_training_is_not_overwritten(place):
    """A file another program put where the run's checkpoint template points, after the
    checks: the save refuses it, and the run is saved to --out instead."""

    class Squatter:
        @hookimpl
        def on_step_end(self, trainer, step):
            if step == 3:
                (place / "ck-1.npz").write_text("someone else's")

    with pytest.raises(charseq.RunFailed, match="cannot write .*ck-1.npz.*not a checkpoint of this run; saved the run "
                                                "to m.npz"):
        Run.start("digits:40", out="m.npz", callbacks=["checkpoint:path=ck-{epoch}.npz"], extra_callbacks=[Squatter()],
                  epochs=3, batch_size=5).fit()
    assert (place / "ck-1.npz").read_text() == "someone else's"
    assert charseq.load(place / "m.npz").training["epoch"] == 1


LOGGER = """
from charseq import hookimpl

class Log:
    '''Writes a line per epoch to path=FILE.'''
    output_options = ["path"]

    def __init__(self, path: str):
        self.path = path

    @hookimpl
    def on_epoch_end(self, epoch):
        with open(self.path, "a") as f:
            f.write(f"{epoch}\\n")

@hookimpl
def register_callbacks(register):
    register("log", Log)
"""


def test_a_plugins_file_output_never_replaces_a_checkpoint_or_metrics_of_another_run(place, plugin_site):
    from conftest import install_fake_distribution

    install_fake_distribution(plugin_site, "throwaway-env", LOGGER, "[charseq]\nlog = throwaway_env\n")
    run_cli("train", "--corpus", "alphabet", "--out", "other.npz", "--metrics", "other.jsonl", *FAST)
    before = (place / "other.npz").read_bytes()
    for target in ("other.npz", "other.jsonl"):
        result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", f"log:path={target}",
                         *FAST, ok=False)
        assert result.exit_code == 2 and "is not this run's" in result.stderr or "another run" in result.stderr
    assert (place / "other.npz").read_bytes() == before
    (place / "plain.log").write_text("earlier lines\n")  # any file that is there: a new run leaves it alone
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", "log:path=plain.log", *FAST,
                     ok=False)
    assert result.exit_code == 2 and "'plain.log' already exists and is not this run's" in result.stderr
    run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--callback", "log:path=plain.log", "--force", *FAST)
    assert (place / "plain.log").read_text() == "earlier lines\n1\n2\n"
    # A branch (more epochs) is a run of its own: the plugin's file is its parent's, so not replaced unasked.
    result = run_cli("train", "--resume", "m.npz", "--epochs", 3, "-q", ok=False)
    assert result.exit_code == 2 and "'plain.log' already exists and is not this run's" in result.stderr
    run_cli("train", "--resume", "m.npz", "--epochs", 3, "-q", "--force")
    assert (place / "plain.log").read_text() == "earlier lines\n1\n2\n3\n"


@pytest.mark.parametrize("corpus,out", [("text:data", "data/model.npz"), ("text:data/*.txt", "data/model.txt"),
                                        ("text:data", "data/sub/ck-{epoch}.npz")])
def test_outputs_may_not_land_where_the_corpus_is_read(place, corpus, out):
    (place / "data" / "sub").mkdir(parents=True)
    (place / "data" / "a.txt").write_text("the cat sat on the mat. " * 200)
    args = ["--out", out] if "{" not in out else ["--out", "m.npz", "--callback", f"checkpoint:path={out}"]
    result = run_cli("train", "--corpus", corpus, "--hidden-size", 16, "--seq-len", 8, "--batch-size", 4, *args,
                     *FAST, ok=False)
    assert result.exit_code == 2 and "lies where the corpus is read from" in result.stderr


def test_an_empty_file_at_out_is_replaced_and_a_replaced_file_keeps_its_permissions(place):
    (place / "empty.npz").write_bytes(b"")
    run_cli("train", "--corpus", "alphabet", "--out", "empty.npz", *FAST)
    assert charseq.load(place / "empty.npz").training["epoch"] == 2
    os.chmod(place / "empty.npz", 0o600)
    run_cli("train", "--resume", "empty.npz", "--epochs", 3, "-q")
    assert stat.S_IMODE((place / "empty.npz").stat().st_mode) == 0o600


def test_a_template_cannot_meet_another_output_or_a_hidden_file(place):
    result = run_cli("train", "--corpus", "alphabet", "--out", "m.npz", "--metrics", "x-1.jsonl", "--callback",
                     "checkpoint:path=x-{epoch}.jsonl", *FAST, ok=False)
    assert result.exit_code == 2 and "could write over callback 'metrics' option path 'x-1.jsonl'" in result.stderr
    run_cli("train", "--corpus", "alphabet", "--out", "a.npz", "--callback", "checkpoint:path=.{epoch}x.npz", *FAST)
    result = run_cli("train", "--corpus", "alphabet", "--out", "b.npz", "--callback",
                     "checkpoint:path=.{epoch}x.npz", *FAST, ok=False)
    assert result.exit_code == 2 and "could write over '.1x.npz'" in result.stderr
