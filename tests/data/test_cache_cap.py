"""The text cache's cap: least recently used entries are evicted when an entry is written,
never the one just written, one a process has in use, nor a file charseq cannot vouch for;
writers and readers at once corrupt nothing."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import charseq
from charseq.cli import cli
from charseq.errors import CharseqWarning, UsageError
from conftest import run_cli

AWAY = tempfile.gettempdir()
ALPHABET = "the quick brown fox jumps over the lazy dog\n"


def text(n: int) -> str:
    """A text of its own for each n, all of the same symbols and length."""
    words = ALPHABET.split()
    return "\n".join(" ".join(words[(i + n) % len(words)] for i in range(k, k + 9)) for k in range(150)) + "\n"


@pytest.fixture
def place(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHARSEQ_CACHE_SIZE", raising=False)
    for n in range(5):
        (tmp_path / f"t{n}.txt").write_text(text(n))
    return tmp_path


def load(place: Path, n: int) -> None:
    """Read text n through the cache as a run does, and let it go (nothing of it kept in use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CharseqWarning)  # an entry not as written would say so
        corpus = charseq.get_corpus(f"text:{place / f't{n}.txt'}")
        assert corpus.vocab.decode(corpus.ids[:60]) == text(n)[:60]
    del corpus
    gc.collect()


def cached(place: Path) -> dict[str, dict]:
    """`charseq cache --json`'s entries, by the file each was encoded from (t0.txt...)."""
    report = json.loads(run_cli("cache", "--json").stdout)
    return {Path(e["sources"][0]).name: e for e in report["entries"]}


def test_an_entry_read_is_kept_and_the_least_recently_used_goes(place, monkeypatch):
    load(place, 0)
    load(place, 1)
    size = cached(place)["t0.txt"]["size"]
    load(place, 0)  # read again: t1 is now the least recently used
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", str(2 * size))
    load(place, 2)
    assert sorted(cached(place)) == ["t0.txt", "t2.txt"]
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["cap_bytes"] == 2 * size and report["used_bytes"] == 2 * size
    assert [Path(e["sources"][0]).name for e in report["entries"]] == ["t2.txt", "t0.txt"]  # most recently used first
    assert report["entries"][0]["last_used"] >= report["entries"][1]["last_used"]


def test_the_cap_bounds_what_the_entries_take(place, monkeypatch):
    for n in range(2):
        load(place, n)
    size = cached(place)["t0.txt"]["size"]
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", f"{int(size * 2.5) / 1000}kB")  # (whole bytes: half a byte is refused)
    for n in range(2, 5):
        load(place, n)
        assert sum(e["size"] for e in cached(place).values()) <= 2.5 * size
    assert sorted(cached(place)) == ["t3.txt", "t4.txt"]
    index = [p for p in (place / "cache" / "index").iterdir()]
    assert len(index) == 2  # the index lines of the entries evicted went with them


def test_a_cap_of_0_keeps_only_the_entry_just_written_and_none_keeps_all(place, monkeypatch):
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", "none")
    for n in range(3):
        load(place, n)
    assert len(cached(place)) == 3
    assert "cap: none (CHARSEQ_CACHE_SIZE=none)" in run_cli("cache").stdout
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", "0")
    load(place, 3)
    assert sorted(cached(place)) == ["t3.txt"]
    started = time.monotonic()
    load(place, 3)  # a hit: not encoded again
    assert sorted(cached(place)) == ["t3.txt"] and time.monotonic() - started < 5


HOLD = """
import sys, charseq
corpus = charseq.get_corpus(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
print(corpus.ids[:5].sum())
"""


def test_an_entry_another_process_has_in_use_is_never_evicted(place, monkeypatch):
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", "0")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, f"text:{place / 't0.txt'}"], cwd=AWAY, env=os.environ,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n", holder.stderr
        load(place, 1)
        load(place, 2)
        assert sorted(cached(place)) == ["t0.txt", "t2.txt"]  # t0 in use; t1, not, evicted by t2
    finally:
        out, err = holder.communicate("", timeout=60)
    assert holder.returncode == 0, err
    load(place, 3)
    assert sorted(cached(place)) == ["t3.txt"]  # no longer in use


def test_only_what_charseq_can_vouch_for_is_evicted(place, monkeypatch, tmp_path):
    load(place, 0)
    cache = place / "cache"
    theirs = {f"{'a' * 64}.json": "{}", f"{'a' * 64}.ids": "x" * 5000, "notes.txt": "mine",
              f"{'b' * 64}.json": (cache / next(p.name for p in cache.glob("*.json"))).read_text()}
    for name, content in theirs.items():
        (cache / name).write_text(content)
    monkeypatch.setenv("CHARSEQ_STATE", str(tmp_path / "another-key"))  # t0's entry is sealed by another key now
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", "0")
    load(place, 1)
    for name, content in theirs.items():
        assert (cache / name).read_text() == content
    assert len(list(cache.glob("*.ids"))) == 3  # t0's (not this key's to evict), t1's, and the look-alike


@pytest.mark.parametrize("value", ["abc", "-1", "5XB", "1e9", "10 %"])
def test_a_bad_cap_is_one_line_before_anything_is_encoded(place, monkeypatch, value):
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", value)
    with pytest.raises(UsageError, match="CHARSEQ_CACHE_SIZE"):
        charseq.get_corpus(f"text:{place / 't0.txt'}")
    for args in (["cache"], ["train", "--corpus", "text:t0.txt", "--out", "m.npz", "--epochs", "1"]):
        result = run_cli(*args, ok=False)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert f"CHARSEQ_CACHE_SIZE={value!r} is not a size" in result.output
    assert not list((place / "cache").glob("*.ids")) and not (place / "m.npz").exists()


@pytest.mark.parametrize("value", ["0.5", ".5", "0.0000001", "1.9", "1.0005k", "0.3Ki"])
def test_a_cap_that_is_not_a_whole_number_of_bytes_is_refused(place, monkeypatch, value):
    """Half a byte is not a cap of 0 (keep only the newest entry), nor 1.9 one of 1."""
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", value)
    for args in (["cache"], ["train", "--corpus", "text:t0.txt", "--out", "m.npz", "--epochs", "1"]):
        result = run_cli(*args, ok=False)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert f"CHARSEQ_CACHE_SIZE={value!r} is not a whole number of bytes" in result.output


@pytest.mark.parametrize("value", ["5K\u0130", "5\u212aB", "\u0665MB", "5\nMB", "5  MB", "5\tMB", "5MB\nnone"])
def test_a_cap_is_read_in_ascii_with_at_most_one_space(place, monkeypatch, value):
    """A Turkish dotted I is not an i, nor a Kelvin sign a k, nor an Arabic-Indic five a 5."""
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", value)
    result = run_cli("cache", ok=False)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"CHARSEQ_CACHE_SIZE={value!r} is not a size" in result.output


@pytest.mark.parametrize("value,size", [("1.5G", 1_500_000_000), ("8.2M", 8_200_000), ("5 MB", 5_000_000),
                                        ("1.5GiB", 3 << 29), ("0.5k", 500), ("2.", 2), ("0.25 KiB", 256),
                                        ("0.000001T", 1_000_000), ("007", 7)])
def test_a_cap_is_exactly_the_bytes_it_names(place, monkeypatch, value, size):
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", value)
    assert json.loads(run_cli("cache", "--json").stdout)["cap_bytes"] == size


@pytest.mark.parametrize("corpus", ["text:t0.txt", "text:-", "lines:t0.txt"])
def test_a_bad_cap_is_said_by_every_corpus_that_reads_files(place, monkeypatch, corpus):
    """lines: never uses the cache, but a setting that text: refuses is not silently taken;
    alphabet and digits read no files, and never look at it."""
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", "0.5")
    args = ["train", "--corpus", corpus, "--out", "m.npz", "--epochs", "1"]
    result = CliRunner().invoke(cli, args, input=text(0).encode(), prog_name="charseq")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "CHARSEQ_CACHE_SIZE='0.5'" in result.output and not (place / "m.npz").exists()
    assert len(charseq.get_corpus("alphabet").vocab) == 26 and len(charseq.get_corpus("digits").vocab) == 10


def test_a_record_whose_ids_were_edited_is_evicted_and_the_ids_left(place, monkeypatch):
    """The record is charseq's, the ids no longer are: the record goes at the next eviction
    (first: it vouches for nothing), so a cap of 0 is met; the ids are left for the user."""
    load(place, 0)
    cache = place / "cache"
    (ids,) = cache.glob("*.ids")
    edited = bytes(reversed(ids.read_bytes()))
    ids.write_bytes(edited)
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", "0")
    load(place, 1)
    report = json.loads(run_cli("cache", "--json").stdout)
    (t1,) = [entry for entry in report["entries"] if entry["verified"]]
    assert t1["sources"] == [str(place / "t1.txt")] and report["used_bytes"] == t1["size"]
    assert ids.read_bytes() == edited and not ids.with_suffix(".json").exists()
    assert report["unvouched"] == [str(ids)]


def test_a_record_whose_ids_were_edited_goes_before_any_entry(place, monkeypatch):
    """It vouches for nothing: evicted before the least recently used entry, which stays."""
    load(place, 0)
    load(place, 1)
    size = cached(place)["t0.txt"]["size"]
    cache = place / "cache"
    ids = next(cache / f"{entry['key']}.ids" for name, entry in cached(place).items() if name == "t1.txt")
    ids.write_bytes(bytes(reversed(ids.read_bytes())))
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", str(2 * size + 50))
    load(place, 2)
    assert sorted(e["sources"][0] for e in json.loads(run_cli("cache", "--json").stdout)["entries"]
                  if e["verified"]) == [str(place / "t0.txt"), str(place / "t2.txt")]
    assert ids.exists() and not ids.with_suffix(".json").exists()


CHURN = """
import sys, warnings, charseq
from charseq.errors import CharseqWarning
warnings.simplefilter("error", CharseqWarning)
place, me = sys.argv[1], int(sys.argv[2])
for round in range(6):
    for n in ((me + round) % 4, (me + round + 1) % 4):
        corpus = charseq.get_corpus(f"text:{place}/t{n}.txt")
        assert corpus.vocab.decode(corpus.ids) == open(f"{place}/t{n}.txt").read(), (me, n)
        del corpus
"""


def test_writers_and_readers_at_once_corrupt_nothing(place, monkeypatch):
    """Four processes read and write four texts at once, in a cache that holds about one:
    each reads every text whole and right, none warns of an entry not as written, and what
    is left is all charseq's, with nothing half written."""
    load(place, 0)
    size = cached(place)["t0.txt"]["size"]
    monkeypatch.setenv("CHARSEQ_CACHE_SIZE", str(int(size * 1.5)))
    churn = [subprocess.Popen([sys.executable, "-c", CHURN, str(place), str(me)], cwd=AWAY, env=os.environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for me in range(4)]
    for process in churn:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    report = json.loads(run_cli("cache", "--json").stdout)
    assert report["unvouched"] == [] and all(e["verified"] for e in report["entries"])
    assert [p.name for p in (place / "cache").iterdir() if p.name.startswith(".")] == []
    for n in range(4):
        load(place, n)
