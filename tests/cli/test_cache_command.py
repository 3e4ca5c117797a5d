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



@pytest.mark.parametrize("value,size,cap", [("500MB", 500_000_000, "500.0 MB"), ("2GiB", 2 << 30, "2 GiB"),
                                            ("1.5 k", 1500, "1.5 kB"), ("64", 64, "64 B"), ("10kib", 10240, "10 KiB"),
                                            ("1.25GiB", 5 << 28, "1.25 GiB"), ("1025MiB", 1025 << 20, "1,025 MiB"),
                                            ("1024", 1024, "1 KiB"), ("1000KiB", 1_024_000, "1.0 MB"),
                                            (" none ", None, "none"), ("0", 0, "0 B")])
def test_cache_says_its_cap_as_set(tmp_path, monkeypatch, value, size, cap):
    """A cap set in powers of 1024 is printed so, exactly (1 GiB is no 1.1 GB)."""
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", value)
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["cap_bytes"] == size and report["cap_setting"] == value.strip() and report["used_bytes"] == 0
    assert run_cli("cache").stdout.splitlines()[1].startswith(f"cap: {cap} (CHARSEQ_CACHE_SIZE={value.strip()}), 0 B used")


def test_cache_shows_the_default_cap_and_what_the_entries_take(cache):
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["cap_bytes"] == 1 << 30 and report["cap_setting"] is None
    assert report["used_bytes"] == sum(entry["size"] for entry in report["entries"])
    used = f"{report['used_bytes'] / 1000:.1f} kB"
    assert run_cli("cache").stdout.splitlines()[1] == (f"cap: 1 GiB (the default; CHARSEQ_CACHE_SIZE changes it), "
                                                       f"{used} used; the least recently used entries, listed last, "
                                                       "are evicted first")


# -- a cache shared with other users (CHARSEQ_CACHE=/tmp/shared, mode 1777) --------------------

DIES_AT_THE_RENAME = """
import os, sys, charseq
os.replace = lambda *args, **kwargs: os._exit(9)  # killed just as the ids would take the entry's place
charseq.get_corpus("text:-")
"""


def _leftovers(cache: Path, tmp_path: Path) -> tuple[Path, Path]:
    """What a run killed while it writes leaves, as anyone listing the cache sees it: the ids
    being written (`.KEY.ids.TOKEN.XXXXXXXX.tmp`) and the folder of a stream's copy."""
    env = {**os.environ, "CHARSEQ_CACHE": str(cache)}
    killed = subprocess.run([sys.executable, "-c", DIES_AT_THE_RENAME], input=b"another text, piped in\n" * 50,
                            env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    (ids,) = cache.glob(".*.ids.*.tmp")
    (spool,) = cache.glob(".spool-*.tmp")
    return ids, spool


OTHER_USER = 4242


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="planting another user's file needs root")
def test_files_another_user_put_there_are_neither_counted_nor_cleared(cache, tmp_path):
    """The token in a file's name while it is written is there for anyone listing the cache
    to see: another user who copies it, into the same name once that is free or into another,
    makes a file charseq did not write. It is not charseq's (another user's file could not be
    deleted in a sticky directory: --clear stopped half way)."""
    before = json.loads(run_cli("cache", "--json").stdout)["total_bytes"]
    ids, spool = _leftovers(cache, tmp_path)
    token = ids.name.split(".")[3]
    planted = [ids, spool, spool / "text", cache / f".{'e' * 64}.json.{token}.00000001.tmp"]
    planted[-1].write_bytes(b"x" * 5000)
    for path in planted:
        os.lchown(path, OTHER_USER, OTHER_USER)
    report = json.loads(run_cli("cache", "--json").stdout)
    assert {str(ids), str(spool), str(planted[-1])} <= set(report["unvouched"])
    assert report["total_bytes"] == before  # none of the planted bytes
    result = json.loads(run_cli("cache", "--clear", "--json").stdout)
    assert result["entries"] == 2 and result["freed_bytes"] == before
    assert all(os.path.lexists(path) for path in planted)


def test_a_look_alike_of_a_leftovers_name_is_not_charseqs(cache, tmp_path):
    """A token is sealed with the name it was made for: the same token in another name is
    someone's copy. A stream's copy's folder holding anything but the copy is not charseq's
    to delete either (a folder of the user's own, named like one)."""
    ids, spool = _leftovers(cache, tmp_path)
    token = ids.name.split(".")[3]
    look_alike = cache / f".{'e' * 64}.json.{token}.00000001.tmp"
    look_alike.write_text("a file of the user's")
    (spool / "important").write_text("the user's own")
    report = json.loads(run_cli("cache", "--json").stdout)
    assert {str(look_alike), str(spool)} <= set(report["unvouched"]) and str(ids) not in report["unvouched"]
    run_cli("cache", "--clear")
    assert not ids.exists() and look_alike.read_text() == "a file of the user's"
    assert (spool / "important").read_text() == "the user's own"


def test_a_leftover_of_charseqs_is_cleared(cache, tmp_path):
    ids, spool = _leftovers(cache, tmp_path)
    report = json.loads(run_cli("cache", "--json").stdout)
    assert str(ids) not in report["unvouched"] and str(spool) not in report["unvouched"]
    run_cli("cache", "--clear")
    assert not os.path.lexists(ids) and not os.path.lexists(spool)


@pytest.mark.parametrize("refused", ["ids", "json"])
def test_a_file_clear_cannot_delete_is_said_in_one_line_and_the_rest_is_cleared(cache, monkeypatch, refused):
    """An entry's ids go first, then its record: a record left behind (its ids refused, or
    itself refused) still vouches for what is left, which the next --clear takes."""
    report = json.loads(run_cli("cache", "--json").stdout)
    stuck = cache / f"{report['entries'][0]['key']}.{refused}"
    unlink = os.unlink

    def refusing(path, *args, **kwargs):
        if Path(path) == stuck:
            raise PermissionError(1, "Operation not permitted", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refusing)
    result = run_cli("cache", "--clear", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output and result.stderr.count("\n") == 1
    assert f"could not delete 1 file of charseq's: {str(stuck)!r} (Operation not permitted)" in result.stderr
    assert result.stdout.startswith(f"cleared {cache}: 1 entry, ")
    left = sorted(p.name for p in cache.iterdir() if p.name.endswith((".ids", ".json")))
    key = report["entries"][0]["key"]
    assert left == ([f"{key}.ids", f"{key}.json"] if refused == "ids" else [f"{key}.json"])
    assert json.loads(run_cli("cache", "--json").stdout)["unvouched"] == []  # what is left is still charseq's
    monkeypatch.setattr(os, "unlink", unlink)
    assert json.loads(run_cli("cache", "--clear", "--json").stdout)["entries"] == (1 if refused == "ids" else 0)
    assert not [p for p in cache.iterdir() if p.name.endswith((".ids", ".json"))]


def test_entries_charseq_cannot_vouch_for_are_listed_apart_after_its_own(cache):
    """The last of charseq's entries listed is the next evicted; one it cannot vouch for (here
    edited, and so the most recently touched) is never evicted, and is listed after them."""
    report = json.loads(run_cli("cache", "--json").stdout)
    edited = cache / f"{report['entries'][-1]['key']}.json"
    record = json.loads(edited.read_text())
    record["sources"] = ["elsewhere.txt"]
    edited.write_text(json.dumps(record))
    report = json.loads(run_cli("cache", "--json").stdout)
    assert [entry["verified"] for entry in report["entries"]] == [True, False]
    lines = run_cli("cache").stdout.splitlines()
    apart = lines.index("charseq cannot vouch for these (another user's or key's, an earlier release's, or edited): "
                        "never evicted nor cleared, but for the record of an entry whose ids were edited")
    assert lines[apart + 1].endswith("elsewhere.txt") and len(lines) == apart + 3


def test_a_name_that_ends_like_an_entrys_but_goes_on_is_not_charseqs(cache):
    """A name is charseq's whole or not at all: "KEY.ids" and a newline is another file."""
    key = json.loads(run_cli("cache", "--json").stdout)["entries"][0]["key"]
    names = [f"{key}.ids\n", f"{key}.json\n", f".spool-{'c' * 24}.tmp\n"]
    for name in names:
        (cache / name).write_text("the user's own")
    run_cli("cache", "--clear")
    assert all((cache / name).read_text() == "the user's own" for name in names)
