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
