"""`charseq cache`: where the text cache is, what it holds, and clearing only charseq's files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

TEXT = "the quick brown fox jumps over the lazy dog\n" * 60


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache of the user's choosing, shared with a file of theirs, and two texts encoded in it."""
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "cache"
    directory.mkdir()
    monkeypatch.setenv("CHARSEQ_CACHE", str(directory))
    (directory / "notes.txt").write_text("mine")
    (directory / ("0" * 64)).write_text("also mine: no suffix charseq writes")
    (directory / "index").mkdir()
    (directory / "index" / "README").write_text("mine too")
    (tmp_path / "novel.txt").write_text(TEXT)
    (tmp_path / "parts").mkdir()
    for index, name in enumerate(("a.txt", "b.txt", "c.txt")):
        (tmp_path / "parts" / name).write_text(TEXT[index * 100 :])
    run_cli("eval", _model(tmp_path), "--corpus", "text:novel.txt")
    run_cli("eval", _model(tmp_path), "--corpus", "text:parts")
    return directory


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "m.npz"
    if not path.exists():
        run_cli("train", "--corpus", f"text:{tmp_path / 'novel.txt'}", "--out", path, "--epochs", 1, "--hidden-size", 8,
                "--seq-len", 8, "--batch-size", 2, "-q", "--sample-length", 0)
    return path


def test_cache_shows_where_it_is_and_each_entry(cache, tmp_path):
    lines = run_cli("cache").stdout.splitlines()
    assert lines[0] == f"cache: {cache} (set by CHARSEQ_CACHE)"
    novel = [line for line in lines if line.endswith(str(tmp_path / "novel.txt"))]
    assert len(novel) == 1 and f"{len(TEXT):,} characters" in novel[0]
    assert any(line.endswith(f"{tmp_path / 'parts' / 'a.txt'} and 2 more files") for line in lines), lines
    assert lines[-1].startswith("2 entries, ") and lines[-1].endswith(" in all")


def test_cache_json_lists_sizes_characters_and_sources(cache, tmp_path):
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["directory"] == str(cache) and report["decided_by"] == "CHARSEQ_CACHE"
    by_source = {tuple(e["sources"]): e for e in report["entries"]}
    novel = by_source[(str(tmp_path / "novel.txt"),)]
    assert novel["characters"] == len(TEXT) and novel["encoding"] == "utf-8" and novel["exact"] is False
    assert novel["size"] == sum((cache / f"{novel['key']}.{s}").stat().st_size for s in ("ids", "json"))
    assert len(by_source) == 2 and report["total_bytes"] > sum(e["size"] for e in report["entries"])  # and the index


def test_an_entry_of_an_earlier_release_has_its_source_unknown(cache):
    for meta in cache.glob("*.json"):
        data = json.loads(meta.read_text())
        del data["sources"], data["encoding"], data["exact"], data["skipped"]  # as 0.3 wrote them
        meta.write_text(json.dumps(data))
    lines = run_cli("cache").stdout.splitlines()
    assert sum(line.endswith("source unknown") for line in lines) == 2, lines


LOOK_ALIKES = [f"{'a' * 64}.json", f"{'a' * 64}.ids", f".{'b' * 64}.ids.0123abcd.tmp", ".spool-abc123.tmp",
               f".spool-{'c' * 24}.tmp", f"index/{'d' * 64}"]  # named as charseq names its files


def test_clear_deletes_only_charseqs_files_and_says_what_it_freed(cache):
    """A file is deleted when charseq can vouch it wrote it (a record sealed with the user's
    key, ids that record names, a sealed index line or temporary name), never for its name."""
    for name in LOOK_ALIKES:
        (cache / name).write_text("a file of the user's, or of another tool's")
    total = json.loads(run_cli("cache", "--json").stdout)["total_bytes"]
    result = run_cli("cache", "--clear")
    assert result.stdout.startswith(f"cleared {cache}: 2 entries, {_shown(total)} freed; left: 6 files")
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == sorted(
        ["0" * 64, "index", "index/README", "notes.txt", *LOOK_ALIKES])
    assert run_cli("cache").stdout.splitlines()[-1].startswith("0 entries, 0 B in all")
    again = json.loads(run_cli("cache", "--clear", "--json").stdout)
    assert again == {"directory": str(cache), "entries": 0, "freed_bytes": 0, "left": 6}


def test_what_an_interrupted_copy_of_standard_input_leaves_is_cleared(cache, tmp_path):
    """A stream is copied into the cache before it is encoded; killed while it copies, charseq
    leaves a file whose sealed name tells it from a look-alike."""
    env = {**os.environ, "CHARSEQ_CACHE": str(cache)}
    reader = subprocess.Popen([sys.executable, "-m", "charseq", "eval", str(_model(tmp_path)), "--corpus", "text:-"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              cwd=tmp_path)
    try:
        assert reader.stdin is not None
        reader.stdin.write(TEXT.encode())
        reader.stdin.flush()
        deadline = time.monotonic() + 60
        while not [p for p in cache.iterdir() if p.name.startswith(".spool-")] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        reader.kill()
        reader.wait()
    (left,) = [p for p in cache.iterdir() if p.name.startswith(".spool-")]
    (cache / ".spool-abc123.tmp").write_text("a look-alike")
    assert json.loads(run_cli("cache", "--clear", "--json").stdout)["left"] == 1
    assert not left.exists() and (cache / ".spool-abc123.tmp").exists()


def test_without_a_key_nothing_is_vouched_for_and_nothing_deleted(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CHARSEQ_STATE", str(tmp_path / "another-state"))  # another key: none of these are its
    result = run_cli("cache", "--clear")
    assert result.stdout.startswith(f"cleared {cache}: 0 entries, 0 B freed; left: ")
    assert len(list(cache.glob("*.ids"))) == 2


def test_a_cleared_text_is_encoded_again(cache, tmp_path):
    run_cli("cache", "--clear")
    run_cli("eval", tmp_path / "m.npz", "--corpus", "text:novel.txt")
    assert len(json.loads(run_cli("cache", "--json").stdout)["entries"]) == 1


def _shown(size: int) -> str:
    return f"{size} B" if size < 1000 else f"{size / 1000:.1f} kB"


@pytest.mark.parametrize("variable,decided", [("XDG_CACHE_HOME", "under XDG_CACHE_HOME"), (None, "the default")])
def test_cache_says_which_setting_decided_it(tmp_path, monkeypatch, variable, decided):
    monkeypatch.delenv("CHARSEQ_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if variable:
        monkeypatch.setenv(variable, str(tmp_path / "xdg"))
    expected = tmp_path / ("xdg" if variable else "home/.cache") / "charseq"
    assert run_cli("cache").stdout.startswith(f"cache: {expected} ({decided}")


def test_an_unusable_cache_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "a-file"))
    for args in (["cache"], ["cache", "--clear"]):
        result = run_cli(*args, ok=False)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "cannot hold charseq's cache (it is not a directory)" in result.stderr
    assert (tmp_path / "a-file").read_text() == ""


def test_clear_never_reaches_through_a_linked_index(cache, tmp_path):
    """An index that is a link to another directory holds nothing of the cache's."""
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / ("ab" * 32)  # named like an index entry
    precious.write_text("precious")
    shutil.rmtree(cache / "index", ignore_errors=True)
    (cache / "index").symlink_to(outside, target_is_directory=True)
    run_cli("cache", "--clear")
    assert precious.read_text() == "precious"


def test_ids_rewritten_in_place_by_someone_else_are_not_cleared(cache):
    """The same inode and size, other content (as when a file system hands a deleted file's
    inode to a new one): charseq did not write these bytes, so clear leaves them."""
    ids = sorted(cache.glob("*.ids"))[0]
    mine = bytes(reversed(ids.read_bytes()))
    with open(ids, "r+b") as rewritten:
        rewritten.write(mine)
    result = json.loads(run_cli("cache", "--clear", "--json").stdout)
    assert result["entries"] == 1 and ids.read_bytes() == mine


def test_a_huge_sparse_file_at_an_entrys_ids_is_never_read_to_the_end(cache):
    """Its record says how large the ids are: a planted 64 GiB sparse file is not hashed."""
    ids = sorted(cache.glob("*.ids"))[0]
    ids.unlink()
    with open(ids, "wb") as sparse:
        sparse.truncate(64 << 30)
    started = time.monotonic()
    result = json.loads(run_cli("cache", "--clear", "--json").stdout)
    assert time.monotonic() - started < 30 and ids.exists() and result["left"] == 1



@pytest.mark.parametrize("value,size", [("500MB", 500_000_000), ("2GiB", 2 << 30), ("1.5 k", 1500), ("64", 64),
                                        ("10kib", 10240), (" none ", None), ("0", 0)])
def test_cache_says_its_cap_as_set(tmp_path, monkeypatch, value, size):
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", value)
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["cap_bytes"] == size and report["cap_setting"] == value.strip() and report["used_bytes"] == 0
    cap = "none" if size is None else _shown(size) if size < 10**6 else f"{size / 10**6:.1f} MB" if size < 10**9 \
        else f"{size / 10**9:.1f} GB"
    assert run_cli("cache").stdout.splitlines()[1].startswith(f"cap: {cap} (CHARSEQ_CACHE_SIZE={value.strip()}), 0 B used")


def test_cache_shows_the_default_cap_and_what_the_entries_take(cache):
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["cap_bytes"] == 1 << 30 and report["cap_setting"] is None
    assert report["used_bytes"] == sum(entry["size"] for entry in report["entries"])
    used = f"{report['used_bytes'] / 1000:.1f} kB"
    assert run_cli("cache").stdout.splitlines()[1] == (f"cap: 1.1 GB (the default; CHARSEQ_CACHE_SIZE changes it), "
                                                       f"{used} used; the least recently used entries, listed last, "
                                                       "are evicted first")
