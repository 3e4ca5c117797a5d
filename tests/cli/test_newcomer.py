"""What a newcomer meets in the first hour (issue 21), each as a user would want it."""

from __future__ import annotations

from conftest import run_cli


def test_a_files_name_given_as_a_corpus_is_answered_with_the_specs_that_read_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "novel.txt").write_text("the cat sat on the mat\n")
    refused = run_cli("train", "--corpus", "novel.txt", ok=False)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "give it as text:novel.txt (running text) or lines:novel.txt (one item per line)" in refused.stderr
    unknown = run_cli("train", "--corpus", "nosuch.txt", ok=False)  # no such file: no such advice
    assert "unknown corpus 'nosuch.txt'" in unknown.stderr and "text:" not in unknown.stderr


def test_resuming_a_finished_run_says_it_is_complete_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", "a.npz", "-q")
    again = run_cli("train", "--resume", "a.npz")
    first = again.stdout.splitlines()[0]
    assert first.startswith("the run is complete (2 of 2 epochs)") and "--epochs" in first
    assert "resuming from" not in again.stdout


def _epoch_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("epoch ")]


def test_epoch_lines_come_at_a_readable_rate_with_the_first_and_the_last(tmp_path, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    began = time.monotonic()
    result = run_cli("train", "--corpus", "alphabet", "--sample-length", 0)  # 180 epochs of 15 tiny steps
    seconds = time.monotonic() - began
    lines = _epoch_lines(result.stdout)
    assert lines[0].startswith("epoch   1/180") and lines[-1].startswith("epoch 180/180")
    assert len(lines) <= seconds + 2, lines  # about one a second, besides the first and the last
    every = _epoch_lines(run_cli("train", "--corpus", "alphabet", "--out", "all.npz", "--all-epochs").stdout)
    assert [int(line.split()[1].split("/")[0]) for line in every] == list(range(1, 181))


def test_a_run_that_stops_early_prints_its_last_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # no epoch improves the loss by 10 nats: early stopping ends the run after epoch 2, within a second
    result = run_cli("train", "--corpus", "alphabet", "--patience", 1, "--min-delta", 10, "--sample-length", 0)
    lines = _epoch_lines(result.stdout)
    assert lines[0].startswith("epoch   1/180") and lines[-1].startswith("epoch   2/180"), result.stdout
    assert "stopped early at epoch 2" in result.stdout


def test_samples_of_text_are_printed_apart_by_a_line_no_sample_can_hold(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    # a text that holds the box-drawing line's character and blank lines: the separator must differ
    (tmp_path / "boxes.txt").write_text("ab ─\n\ncd ═\n" * 2000)
    run_cli("train", "--corpus", "text:boxes.txt", "--epochs", 1, "--hidden-size", 16, "-q", "--sample-length", 0)
    made = run_cli("generate", "boxes.npz", "--prime", "ab", "--num-samples", 3, "--length", 40, "--seed", 3).stdout
    texts = [json.loads(line)["text"] for line in run_cli(
        "generate", "boxes.npz", "--prime", "ab", "--num-samples", 3, "--length", 40, "--seed", 3, "--json").stdout
        .splitlines()]
    assert made == "\n━━━━━━━━━━━━━━━━━━━━\n".join("ab" + text for text in texts) + "\n"


def _json(result) -> dict:
    import json

    return json.loads(result.stdout)


def test_eval_without_a_corpus_scores_the_held_out_part_and_reproduces_the_validation_loss(tmp_path, monkeypatch):
    import pytest

    import charseq

    monkeypatch.chdir(tmp_path)
    (tmp_path / "play.txt").write_text("To be, or not to be, that is the question.\n" * 300)
    run_cli("train", "--corpus", "text:play.txt", "--hidden-size", 32, "--seq-len", 16, "--batch-size", 8,
            "--epochs", 2, "-q", "--sample-length", 0)
    recorded = charseq.load("play.npz").progress["val_loss"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the run's corpus is found from any directory
    line = run_cli("eval", "../play.npz").stdout
    assert line.startswith("play: 645 characters the run held out, loss ")
    scored = _json(run_cli("eval", "../play.npz", "--json"))
    assert scored["held_out"] is True and scored["characters"] == 645
    assert scored["loss"] == pytest.approx(recorded, rel=1e-5)
    whole = run_cli("eval", "../play.npz", "--corpus", "text:../play.txt")
    assert whole.stdout.startswith("play: 12,900 characters, loss ")
    assert "note: this is the run's own text, its training part included; --held-out scores only the 645 " \
           "characters the run held out" in whole.stderr
    again = _json(run_cli("eval", "../play.npz", "--corpus", "text:../play.txt", "--held-out", "--json"))
    assert again["loss"] == pytest.approx(recorded, rel=1e-5)
    (elsewhere / "other.txt").write_text("To be, or not to be, that is the question.\n" * 299)
    refused = run_cli("eval", "../play.npz", "--corpus", "text:other.txt", "--held-out", ok=False)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "is not the text the run trained on" in refused.stderr


def test_eval_of_a_model_of_items_says_which_items_it_scored(tmp_path, monkeypatch):
    import pytest

    import charseq

    monkeypatch.chdir(tmp_path)
    names = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
    (tmp_path / "names.txt").write_text("\n".join(f"{n}{i}" for i in range(40) for n in names) + "\n")
    run_cli("train", "--corpus", "lines:names.txt", "--hidden-size", 16, "--epochs", 2, "-q", "--sample-length", 0)
    recorded = charseq.load("names.npz").progress["val_loss"]
    held = run_cli("eval", "names.npz")
    assert held.stdout.startswith("names: 40 items (") and "the run held out, loss" in held.stdout
    assert _json(run_cli("eval", "names.npz", "--json"))["loss"] == pytest.approx(recorded, rel=1e-5)
    whole = run_cli("eval", "names.npz", "--corpus", "lines:names.txt")
    assert whole.stdout.startswith("names: 400 items (") and "--held-out scores only the 40 items" in whole.stderr
    assert _json(run_cli("eval", "names.npz", "--corpus", "lines:names.txt", "--held-out", "--json"))["loss"] == \
        pytest.approx(recorded, rel=1e-5)


def test_eval_of_a_run_that_held_nothing_out_says_it_scored_its_training_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "-q", "--sample-length", 0)
    result = run_cli("eval", "alphabet.npz")
    assert result.stdout.startswith("alphabet: 26 characters, loss ")
    assert "note: the run held nothing out, so this is the text it trained on" in result.stderr


def test_eval_without_a_corpus_of_a_checkpoint_that_records_no_run_asks_for_one():
    from pathlib import Path

    old = Path(__file__).resolve().parents[1] / "fixtures" / "alphabet-0.1.0.npz"
    refused = run_cli("eval", old, ok=False)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "did not record its run" in refused.stderr and "give the text to score with --corpus" in refused.stderr
    assert run_cli("eval", old, "--corpus", "alphabet").stdout.startswith("alphabet: 26 characters, loss ")


def test_a_run_that_ends_far_worse_than_a_uniform_guess_is_warned_and_told_what_to_try(tmp_path, monkeypatch):
    import pytest

    import charseq

    monkeypatch.chdir(tmp_path)
    diverged = run_cli("train", "--corpus", "alphabet", "--lr", "1e6", "--epochs", 3, "--clip", 0, "--sample-length", 0)
    assert diverged.exit_code == 0 and diverged.stderr.count("\n") == 1  # one line, and the run is still saved
    assert "charseq: warning: the run ended far worse than a uniform guess: loss " in diverged.stderr
    assert ("ln 26 = 3.26; if it diverged, try a smaller learning rate (--lr, now 1e+06), clipping the gradient's "
            "norm (--clip-norm 1) or the Adam optimizer (--optimizer adam)") in diverged.stderr
    fine = run_cli("train", "--corpus", "alphabet", "--epochs", 3, "--out", "fine.npz", "--sample-length", 0)
    assert fine.stderr == ""
    # barely trained, a little worse than guessing (2.38 against ln 10 = 2.30): nothing diverged
    barely = run_cli("train", "--corpus", "digits:20", "--epochs", 2, "--out", "barely.npz", "--sample-length", 0)
    assert barely.stderr == "" and charseq.load("barely.npz").progress["loss"] > 2.31
    with pytest.warns(charseq.CharseqWarning, match=r"far worse than a uniform guess.*\(lr=…, now 1e\+06\) or the Adam optimizer \(optimizer=.adam.\)"):
        charseq.Run.start("alphabet", lr=1e6, epochs=2, out="api.npz").fit()


class _Metadata:
    """A distribution's metadata as importlib.metadata gives it: direct_url.json, or none."""

    def __init__(self, direct_url: dict | None):
        self.direct_url = direct_url

    def read_text(self, name: str):
        import json

        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url is not None else None


def test_install_hints_say_the_command_that_works_for_how_charseq_was_installed(monkeypatch):
    import shlex
    import sys

    from charseq import installation

    cases = [
        ([], "pip install 'charseq[serve]'"),  # from an index (or not installed)
        ([{"url": "file:///home/ann/src/char%20seq", "dir_info": {"editable": True}}],
         "pip install -e '/home/ann/src/char seq[serve]'"),
        ([{"url": "file:///srv/charseq", "dir_info": {}}], "pip install '/srv/charseq[serve]'"),
        ([{"url": "file:///tmp/dist/charseq-0.6.0-py3-none-any.whl", "archive_info": {}}],
         "pip install '/tmp/dist/charseq-0.6.0-py3-none-any.whl[serve]'"),
        ([{"url": "https://github.com/ann/charseq.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}],
         "pip install 'charseq[serve] @ git+https://github.com/ann/charseq.git@abc123'"),
        # a stale charseq.egg-info in the checkout's folder comes first on the path and says nothing
        ([None, {"url": "file:///srv/charseq", "dir_info": {"editable": True}}], "pip install -e '/srv/charseq[serve]'"),
    ]
    for found, command in cases:
        monkeypatch.setattr(installation.metadata, "distributions",
                            lambda name, found=found: [_Metadata(d) for d in found] if name == "charseq" else [])
        pip = f"{shlex.quote(sys.executable)} -m "  # this interpreter's pip, not whichever is on the PATH
        assert installation.install_command("serve") == pip + command, found


def test_the_hint_of_this_installation_is_its_own():
    """Whatever installed the charseq under test (CI: a non-editable install of the checkout),
    the hint names it, so a newcomer's copy-paste works."""
    from charseq import installation

    import shlex
    import sys

    source = installation.installed_from()
    command = installation.install_command("plot")
    pip = f"{shlex.quote(sys.executable)} -m pip install "
    assert command.startswith(pip)
    if source is None or not source["url"].startswith("file:"):
        assert command == pip + "'charseq[plot]'"
    else:
        assert "charseq[plot]" not in command and command.endswith("[plot]'")
        assert (source.get("dir_info") or {}).get("editable", False) == command.startswith(pip + "-e ")


def test_the_run_line_shows_the_threads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_cli("train", "--corpus", "alphabet", "--epochs", 1, "--threads", 1, "--sample-length", 0).stdout
    assert first.splitlines()[0].endswith(" epochs=1 threads=1")


def test_a_run_that_waits_for_the_cores_says_so_once_naming_threads(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    if not Path("/proc/thread-self/schedstat").is_file():
        pytest.skip("Linux's scheduler statistics are not here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARSEQ_CONTENTION_SECONDS", "0.5")
    cores = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * cores)]
    try:
        result = run_cli("train", "--corpus", "alphabet", "--epochs", 400, "--sample-length", 0, "-q")
        alone = run_cli("train", "--corpus", "alphabet", "--epochs", 400, "--sample-length", 0, "-q", "--threads", 1,
                        "--out", "one.npz")
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    warning = [line for line in result.stderr.splitlines() if "waited for a free core" in line]
    assert len(warning) == 1, result.stderr  # once
    assert warning[0].startswith("charseq: warning: training waited for a free core ")
    assert f"--threads {max(1, cores // 2)}" in warning[0]
    # with one thread already, fewer threads is no advice: fewer jobs is
    assert "this run uses one thread already: run fewer jobs at once" in alone.stderr, alone.stderr


def test_a_model_that_writes_every_box_character_gets_a_separator_all_the_same(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    boxes = "─═━=~#*-" + "".join(map(chr, range(0x2500, 0x2580)))
    (tmp_path / "boxes.txt").write_text(("ab\n\ncd " + boxes) * 60)
    run_cli("train", "--corpus", "text:boxes.txt", "--epochs", 1, "--hidden-size", 8, "--batch-size", 4, "-q",
            "--sample-length", 0)
    made = run_cli("generate", "boxes.npz", "--prime", "a", "--num-samples", 2, "--length", 30, "--seed", 1).stdout
    separator = made.split("\n")
    lines = [line for line in separator if len(set(line)) == 1 and len(line) == 20 and line[0] not in boxes]
    assert lines and lines[0][0] == "▀", made  # the first code point past the boxes the model does not know


def test_sizes_that_cannot_fit_in_memory_are_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "alphabet", "--epochs", 1, "-q", "--sample-length", 0)
    for args, flag in ((["--num-samples", "99999999999"], "--num-samples must be at most 100,000"),
                       (["--num-samples", "100000", "--length", "10000"], "--num-samples times --length must be")):
        refused = run_cli("generate", "alphabet.npz", *args, ok=False)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and flag in refused.stderr, refused.stderr
    refused = run_cli("train", "--corpus", "alphabet", "--out", "b.npz", "--sample-length", "99999999999999999999",
                      ok=False)
    assert refused.exit_code == 2 and "--sample-length" in refused.stderr
    import os

    assert not os.path.exists("b.npz")  # refused before training
    import pytest

    import charseq

    saved = charseq.load("alphabet.npz")
    with pytest.raises(charseq.DecodingError, match="length must be at most 100,000,000 for text made whole"):
        charseq.generate(saved.model, saved.vocab, "A", 10**9)  # held whole; generate --length 10**9 streams


def test_eval_of_an_interrupted_run_says_its_weights_came_after_the_last_evaluation(tmp_path, monkeypatch):
    import signal
    import warnings

    import charseq

    class InterruptAtStep:
        @charseq.hookimpl
        def on_step_end(self, trainer, step, loss):
            if step == 5:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    trainer.interrupted = signal.SIGINT  # what Ctrl-C does

    monkeypatch.chdir(tmp_path)
    (tmp_path / "play.txt").write_text("To be, or not to be, that is the question.\n" * 300)
    result = charseq.Run.start("text:play.txt", hidden_size=16, seq_len=16, batch_size=8, epochs=3, eval_every=2,
                               extra_callbacks=[InterruptAtStep()]).fit()
    assert result.status == "interrupted"
    scored = run_cli("eval", "play.npz")
    assert ("note: the weights were saved at step 5, after the run's last evaluation (step 4, validation loss "
            in scored.stderr), scored.stderr


def test_eval_knows_an_earlier_releases_run_text_and_says_what_held_out_needs():
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    whole = run_cli("eval", fixtures / "play-0.3.0.npz", "--corpus", f"text:{fixtures / 'play.txt'}")
    assert "note: this is the run's own text, its training part included" in whole.stderr
    refused = run_cli("eval", fixtures / "play-0.1.0.npz", "--corpus", f"text:{fixtures / 'play.txt'}", "--held-out",
                      ok=False)
    assert refused.exit_code == 2 and "score all of the text, without --held-out" in refused.stderr


def test_eval_says_score_not_resume_and_how_to_point_at_a_moved_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "play.txt").write_text("To be, or not to be, that is the question.\n" * 300)
    run_cli("train", "--corpus", "text:play.txt", "--hidden-size", 16, "--epochs", 1, "--batch-size", 8, "-q",
            "--sample-length", 0)
    (tmp_path / "play.txt").rename(tmp_path / "moved.txt")
    moved = run_cli("eval", "play.npz", ok=False)
    assert "if it moved, point at it with --corpus and --held-out" in moved.stderr and "resume" not in moved.stderr
    (tmp_path / "other.txt").write_text("To be, or not to be, that is the question.\n" * 299)
    other = run_cli("eval", "play.npz", "--corpus", "text:other.txt", "--held-out", ok=False)
    assert "score on the same text" in other.stderr and "resume" not in other.stderr


def test_a_held_out_part_unlike_the_rest_is_no_divergence(tmp_path, monkeypatch):
    import math

    import charseq

    monkeypatch.chdir(tmp_path)
    text = ("the quick brown fox jumps over the lazy dog. " * 500)[:19000] + ("QXZJQXZJ" * 200)[:1000]
    (tmp_path / "shift.txt").write_text(text)
    result = run_cli("train", "--corpus", "text:shift.txt", "--hidden-size", 32, "--epochs", 8, "--lr", 0.02,
                     "--sample-length", 0)
    progress = charseq.load("shift.npz").progress
    guess = math.log(len(charseq.load("shift.npz").vocab))
    assert progress["val_loss"] > guess + 1 and progress["loss"] < guess  # learnt its text; the tail is another
    assert "uniform guess" not in result.stderr


def test_the_run_line_shows_the_threads_blas_uses_and_a_huge_count_is_refused(tmp_path, monkeypatch):
    from charseq import blas

    monkeypatch.chdir(tmp_path)
    with blas.limited(99):
        used = blas.threads_in_use() or 99  # what this machine's BLAS makes of 99 (OpenBLAS caps it at its build's)
    first = run_cli("train", "--corpus", "alphabet", "--epochs", 1, "--threads", 99, "--sample-length", 0).stdout
    assert first.splitlines()[0].endswith(f" threads={used}")
    for command in (["train", "--corpus", "alphabet"], ["generate", "alphabet.npz"], ["eval", "alphabet.npz"]):
        refused = run_cli(*command, "--threads", "1000000000000000000000", ok=False)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and "--threads" in refused.stderr


def test_a_file_or_folder_given_as_a_corpus_is_answered_in_words_a_shell_takes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my novel.txt").write_text("the cat sat\n")
    (tmp_path / "a:b.txt").write_text("the cat sat\n")
    (tmp_path / "parts").mkdir()
    (tmp_path / "nl\nname.txt").write_text("the cat sat\n")
    for spec, advice in (("my novel.txt", "is a file: give it as 'text:my novel.txt' (running text) or "
                                          "'lines:my novel.txt'"),
                         ("a:b.txt", "is a file: give it as text:a:b.txt (running text) or lines:a:b.txt"),
                         ("parts", "is a folder: give it as text:parts (running text) or lines:parts"),
                         ("nl\nname.txt", "is a file: give it as text:PATH (running text) or lines:PATH")):
        refused = run_cli("train", "--corpus", spec, ok=False)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and advice in refused.stderr, refused.stderr


def test_json_holds_a_sample_whole_so_its_length_is_bounded_and_sweep_threads_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "alphabet", "--epochs", 1, "-q", "--sample-length", 0)
    refused = run_cli("generate", "alphabet.npz", "--json", "--length", "1000000000", ok=False)
    assert refused.exit_code == 2 and "--length must be at most 100,000,000 with --json" in refused.stderr
    monkeypatch.setenv("COLUMNS", "60")
    listed = run_cli("--help").stdout.split("Commands:\n", 1)[1]
    assert "..." not in listed  # whole lines on a narrow terminal too
    import pytest

    pytest.importorskip("optuna")
    refused = run_cli("sweep", "--corpus", "alphabet", "--param", "lr=log:0.5:8", "--threads", "10000", ok=False)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and "--threads" in refused.stderr
    assert not (tmp_path / "charseq-sweeps.db").exists()  # refused before anything is made
