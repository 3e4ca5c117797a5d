"""Text in, as users have it: piped in, from a pipe, with Windows line endings and a
byte-order mark, in UTF-16, or in a directory that holds a picture too."""

from __future__ import annotations

import json
import os
import pty
import shutil
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_cli

import charseq
from charseq.cli import cli

TEXT = "the quick brown fox jumps over the lazy dog\n" * 60
SMALL = ["--epochs", 1, "--hidden-size", 8, "--seq-len", 8, "--batch-size", 2, "-q", "--sample-length", 0]


def piped(data: bytes, *args):
    """The CLI in-process, with `data` on its standard input."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=data, prog_name="charseq")


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr
    return result.stderr


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    return tmp_path


def entries(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in cache.glob("*.json")]


# -- standard input and pipes ----------------------------------------------------------------


def test_standard_input_trains_like_the_file_and_the_same_text_again_hits_the_cache(place, monkeypatch):
    from charseq.data import text as textfiles

    result = piped(TEXT.encode(), "train", "--corpus", "text:-", "--out", "piped.npz", *SMALL)
    assert result.exit_code == 0, result.output
    (entry,) = entries(place / "cache")
    assert entry["sources"] == ["standard input"] and entry["length"] == len(TEXT)
    assert sorted(p.name for p in (place / "cache").iterdir() if p.name.startswith(".")) == []  # the copy is gone
    monkeypatch.setattr(textfiles, "_encode_to_cache", lambda *a, **k: pytest.fail("encoded again"))
    again = piped(TEXT.encode(), "eval", "piped.npz", "--corpus", "text:-", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["characters"] == len(TEXT)
    (place / "same.txt").write_text(TEXT)  # the same text in a file: the same entry
    assert json.loads(run_cli("eval", "piped.npz", "--corpus", "text:same.txt", "--json").stdout)["characters"] == \
        len(TEXT)


def test_a_run_on_standard_input_resumes_only_on_the_same_text_given_again(place):
    assert piped(TEXT.encode(), "train", "--corpus", "text:-", "--out", "piped.npz", *SMALL).exit_code == 0
    before = (place / "piped.npz").read_bytes()
    (place / "-").write_text("a file that happens to be named -")  # never read in its place
    alone = one_line_error(run_cli("train", "--resume", "piped.npz", "--epochs", 2, ok=False))
    assert "from a stream (standard input or a pipe), which cannot be read again" in alone
    assert "--corpus text:- with it piped in, or --corpus text:FILE holding it" in alone
    other = one_line_error(piped(b"another text entirely\n" * 50, "train", "--resume", "piped.npz", "--corpus",
                                 "text:-", "--epochs", 2))
    assert "is not the text the run trained on" in other
    assert (place / "piped.npz").read_bytes() == before
    resumed = piped(TEXT.encode(), "train", "--resume", "piped.npz", "--corpus", "text:-", "--epochs", 2, "-q",
                    "--sample-length", 0)
    assert resumed.exit_code == 0, resumed.output
    (place / "same.txt").write_text(TEXT)
    run_cli("train", "--resume", "piped.npz", "--corpus", "text:same.txt", "--epochs", 3, "-q", "--sample-length", 0)
    assert charseq.load(place / "piped.npz").training["epoch"] == 3


def test_empty_standard_input_is_one_line(place):
    assert "nothing came from standard input" in one_line_error(piped(b"", "train", "--corpus", "text:-"))


def _subprocess(args: list[str], cwd: Path, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charseq", *map(str, args)], cwd=cwd, capture_output=True,
                          timeout=120, env={**os.environ, "CHARSEQ_CACHE": str(cwd / "cache")}, check=False, **options)


def test_dev_stdin_is_standard_input_read_once(place):
    result = _subprocess(["train", "--corpus", "text:/dev/stdin", "--out", "m.npz", *SMALL], place, input=TEXT.encode())
    assert result.returncode == 0, result.stderr
    assert charseq.load(place / "m.npz").run["characters"] == len(TEXT)


def test_a_terminal_on_standard_input_is_refused_not_waited_on(place):
    leader, follower = pty.openpty()
    try:
        result = _subprocess(["train", "--corpus", "text:-"], place, stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1, result.stderr
    assert b"standard input, which is a terminal; pipe the text in" in result.stderr


def test_a_fifo_is_read_once_like_standard_input(place):
    fifo = place / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(TEXT.encode(),), daemon=True)
    writer.start()
    try:
        run_cli("train", "--corpus", f"text:{fifo}", "--out", "m.npz", *SMALL)
    finally:
        writer.join(timeout=30)
    saved = charseq.load(place / "m.npz")
    assert saved.run["characters"] == len(TEXT) and saved.run["corpus_source"] is None
    assert entries(place / "cache")[0]["sources"] == [str(fifo)]


# -- line endings and byte-order marks ---------------------------------------------------------


def test_crlf_and_a_bom_read_as_the_plain_text_unless_exact(place):
    (place / "unix.txt").write_text(TEXT)
    (place / "windows.txt").write_bytes(b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
    run_cli("train", "--corpus", "text:unix.txt", "--out", "m.npz", *SMALL)
    plain = json.loads(run_cli("eval", "m.npz", "--corpus", "text:windows.txt", "--json").stdout)
    assert plain["characters"] == len(TEXT)
    exact = one_line_error(run_cli("eval", "m.npz", "--corpus", "text:windows.txt", "--exact-text", ok=False))
    assert "the model does not know" in exact and "'\\r', '\\ufeff'" in exact
    run_cli("train", "--corpus", "text:windows.txt", "--exact-text", "--out", "exact.npz", *SMALL)
    assert charseq.load(place / "exact.npz").run["characters"] == len(TEXT) + TEXT.count("\n") + 1  # \r each, BOM
    assert charseq.load(place / "exact.npz").run["corpus_options"]["exact"] is True
    assert sorted(e["exact"] for e in entries(place / "cache")) == [False, False, True]  # two texts, one read twice


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 7, 1 << 20])
def test_crlf_straddling_a_chunk_boundary(chunk, place, monkeypatch):
    import charseq.data.vocab
    from charseq.data import text as textfiles

    monkeypatch.setattr(textfiles, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(charseq.data.vocab, "_ENCODE_CHUNK", max(chunk, 1))
    monkeypatch.setenv("CHARSEQ_CACHE", str(place / f"cache-{chunk}"))
    raw = "\ufeffab\r\ncd\r\n\r\n✓\r\nx\ry\r\r\n\r\ré\r\nlast\r"
    (place / "t.txt").write_bytes(raw.encode())
    read = charseq.get_corpus("text:t.txt")
    assert read.vocab.decode(read.ids) == raw[1:].replace("\r\n", "\n")
    exact = charseq.get_corpus("text:t.txt", exact=True)
    assert exact.vocab.decode(exact.ids) == raw and exact.fingerprint != read.fingerprint


def test_only_a_leading_bom_is_dropped(place):
    (place / "t.txt").write_text("\ufeff\ufeffone\ufefftwo\n")
    read = charseq.get_corpus("text:t.txt")
    assert read.vocab.decode(read.ids) == "\ufeffone\ufefftwo\n"


def test_a_run_recorded_before_exact_existed_resumes_reading_the_text_as_it_did(place):
    """A run of an earlier release recorded no `exact`; it read the text byte for byte, and
    its fingerprint is of that reading: resumed, it reads it so again."""
    (place / "windows.txt").write_bytes(TEXT.replace("\n", "\r\n").encode())
    run = charseq.Run.start("text:windows.txt", corpus_options={"exact": True}, out="old.npz", epochs=1,
                            hidden_size=8, seq_len=8, batch_size=2)
    run.fit()
    old = charseq.load(place / "old.npz")
    del old.run["corpus_options"]["exact"]  # as 0.3 recorded it
    charseq.save(place / "old.npz", old)
    run_cli("train", "--resume", "old.npz", "--epochs", 2, "-q", "--sample-length", 0)
    resumed = charseq.load(place / "old.npz")
    assert resumed.training["epoch"] == 2 and resumed.run["corpus_options"]["exact"] is True
    # Read today's default way, the same file is another text to the run: it would be refused.
    assert charseq.get_corpus("text:windows.txt").fingerprint != resumed.run["fingerprint"]


# -- UTF-16 and UTF-32 -------------------------------------------------------------------------

WIDE = [("utf-16", "UTF-16 (little-endian)", "utf-16"), ("utf-16-le", "UTF-16 (little-endian)", "utf-16-le"),
        ("utf-16-be", "UTF-16 (big-endian)", "utf-16-be"), ("utf-32", "UTF-32 (little-endian)", "utf-32"),
        ("utf-32-le", "UTF-32 (little-endian)", "utf-32-le"), ("utf-32-be", "UTF-32 (big-endian)", "utf-32-be")]


@pytest.mark.parametrize("written,described,advised", WIDE)
def test_wide_text_read_as_utf8_names_the_encoding_to_use(place, written, described, advised):
    (place / "wide.txt").write_bytes(TEXT.encode(written))
    error = one_line_error(run_cli("train", "--corpus", "text:wide.txt", *SMALL, ok=False))
    assert f"'wide.txt' is not utf-8 text: it looks like {described} text; use --encoding {advised}" in error
    run_cli("train", "--corpus", "text:wide.txt", "--encoding", advised, "--out", "m.npz", *SMALL)
    assert charseq.load(place / "m.npz").run["characters"] == len(TEXT)


def test_sniff_wide_encoding_leaves_other_bytes_alone():
    from charseq.data.text import sniff_wide_encoding, wide_encoding_hint

    assert sniff_wide_encoding("naïve café ✓ text".encode()) is None
    assert sniff_wide_encoding(bytes(range(256)) * 8) is None  # a binary file: no pattern of NULs
    assert sniff_wide_encoding("日本語のテキスト".encode("utf-16-le")) is None  # no NULs to go by: the decoder's error
    assert sniff_wide_encoding(b"a\0") is None  # too short to say
    assert sniff_wide_encoding(b"\xff\xfeh\0i\0") == "utf-16"
    assert wide_encoding_hint(b"\0\0\xfe\xff\0\0\0h") == "looks like UTF-32 (big-endian) text; use encoding='utf-32'"


# -- directories with pictures in them ---------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)) * 4


def test_a_picture_in_a_directory_is_skipped_with_a_warning_each_time(place):
    notes = place / "notes"
    (notes / "img").mkdir(parents=True)
    (notes / "a.txt").write_text(TEXT)
    (notes / "img" / "logo.png").write_bytes(PNG)
    (notes / "u.txt").write_bytes(TEXT.encode("utf-16"))
    (notes / "z.txt").write_text(TEXT)
    for attempt in range(2):  # encoding it, then from the cache
        result = run_cli("train", "--corpus", "text:notes", "--out", f"m{attempt}.npz", *SMALL)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("charseq: warning:")]
        assert warnings == [
            "charseq: warning: skipped 'notes/img/logo.png': it is not utf-8 text: bad byte at offset 0",
            ("charseq: warning: skipped 'notes/u.txt': it is not utf-8 text: it looks like UTF-16 (little-endian) "
             "text; use --encoding utf-16")], result.stderr
        assert charseq.load(place / f"m{attempt}.npz").run["characters"] == 2 * len(TEXT)
    assert sorted(p.name for p in notes.rglob("*")) == ["a.txt", "img", "logo.png", "u.txt", "z.txt"]  # nothing lost


def test_a_directory_of_pictures_only_is_one_line(place):
    (place / "pictures").mkdir()
    (place / "pictures" / "a.png").write_bytes(PNG)
    (place / "pictures" / "b.png").write_bytes(PNG[::-1])
    error = one_line_error(run_cli("train", "--corpus", "text:pictures", ok=False))
    assert "none of the 2 files of corpus 'pictures' is utf-8 text" in error and "try --encoding" in error


def test_a_picture_named_directly_is_still_an_error(place):
    (place / "logo.png").write_bytes(PNG)
    error = one_line_error(run_cli("train", "--corpus", "text:logo.png", ok=False))
    assert "'logo.png' is not utf-8 text: bad byte at offset 0; try --encoding" in error


def test_the_ids_skip_exactly_the_skipped_file(place):
    notes = place / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("alpha ")
    (notes / "b.bin").write_bytes(PNG)
    (notes / "c.txt").write_text("gamma")
    with pytest.warns(charseq.CharseqWarning, match="skipped .*b.bin"):
        corpus = charseq.get_corpus("text:notes")
    assert corpus.vocab.decode(corpus.ids) == "alpha gamma"
    assert np.array_equal(corpus.ids, charseq.Corpus.from_text("x", "alpha gamma").ids)


def test_a_nul_is_a_character_like_any_other_and_is_printed_exactly(tmp_path):
    """text: and lines: read NUL alike (only a file that looks like UTF-16 or UTF-32 is
    refused, naming its encoding), and every way out prints it: one sample, several, JSON,
    the closing sample, a model of items."""
    (tmp_path / "nul.txt").write_text("ab\0" * 2000)
    train = run_cli("train", "--corpus", f"text:{tmp_path / 'nul.txt'}", "--model", "rnn", "--hidden-size", 16,
                    "--seq-len", 6, "--batch-size", 8, "--epochs", 3, "--lr", 0.01, "--dropout", 0,
                    "--out", tmp_path / "nul.npz")
    assert "ab\0ab\0»ab\0ab\0ab\0" in train.stdout, train.stdout  # the first window, then the model's
    model = tmp_path / "nul.npz"
    assert run_cli("generate", model, "--prime", "ab", "--sampler", "argmax", "--length", 5).stdout == "ab\0ab\0a\n"
    several = run_cli("generate", model, "--prime", "ab", "--sampler", "argmax", "--length", 4, "--num-samples", 2)
    assert several.stdout == f"ab\0ab\0\n{'─' * 20}\nab\0ab\0\n"  # apart (issue 21)
    made = run_cli("generate", model, "--prime", "ab", "--sampler", "argmax", "--length", 4, "--json")
    assert json.loads(made.stdout)["text"] == "\0ab\0"

    (tmp_path / "names.txt").write_text("a\0b\nab\0\n" * 300)
    run_cli("train", "--corpus", f"lines:{tmp_path / 'names.txt'}", "--hidden-size", 16, "--epochs", 1,
            "--out", tmp_path / "names.npz", "-q", "--sample-length", 0)
    assert "\0" in charseq.load(tmp_path / "names.npz").vocab
    wide = tmp_path / "wide.txt"
    wide.write_bytes("names\nin UTF-16\n".encode("utf-16-le") * 50)
    for kind in ("text", "lines"):
        result = run_cli("train", "--corpus", f"{kind}:{wide}", "--out", tmp_path / f"{kind}.npz", ok=False)
        assert result.exit_code == 2 and "UTF-16" in result.stderr, kind


def test_json_samples_stay_one_per_line_for_readers_that_split_on_unicode_breaks(tmp_path):
    """U+2028, U+2029 and U+0085 are text to JSON but line breaks to str.splitlines()."""
    (tmp_path / "breaks.txt").write_text("ab\u2028c\x85d\u2029" * 1000)
    run_cli("train", "--corpus", f"text:{tmp_path / 'breaks.txt'}", "--model", "rnn", "--hidden-size", 16,
            "--seq-len", 6, "--batch-size", 8, "--epochs", 3, "--lr", 0.01, "--dropout", 0, "-q",
            "--sample-length", 0, "--out", tmp_path / "breaks.npz")
    made = run_cli("generate", tmp_path / "breaks.npz", "--prime", "ab", "--length", 30, "--num-samples", 3,
                   "--json", "--seed", 1).stdout
    lines = made.splitlines()
    assert len(lines) == 3 and all(set(json.loads(line)["text"]) <= set("ab\u2028c\x85d\u2029") for line in lines)
    assert any("\u2028" in json.loads(line)["text"] for line in lines)


# -- the cache vouches for what it holds -------------------------------------------------


OTHER = "a different text, which someone would rather the victim trained on\n" * 40


def _key_learnt_elsewhere(place, monkeypatch, name: str) -> tuple[str, Path]:
    """What anyone can do: encode a text in a cache of their own, which names its entry."""
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv("CHARSEQ_CACHE", str(place / "their-cache"))
        elsewhere.setenv("CHARSEQ_STATE", str(place / "their-state"))
        return charseq.get_corpus(f"text:{place / name}").content_hash, place / "their-cache"


@pytest.mark.parametrize("sealed", [True, False])
def test_an_entry_planted_under_a_texts_key_never_replaces_the_text(place, monkeypatch, sealed):
    """In a cache others may write, an entry planted under the key of the user's text (which
    anyone who has the text can compute) holding another text is not used: its record is not
    sealed with the user's key (sealed: with someone else's; or not at all, as 0.5 wrote them)."""
    (place / "victim.txt").write_text(TEXT)
    (place / "other.txt").write_text(OTHER)
    key, theirs = _key_learnt_elsewhere(place, monkeypatch, "victim.txt")
    other, _ = _key_learnt_elsewhere(place, monkeypatch, "other.txt")
    record = json.loads((theirs / f"{other}.json").read_text())
    record["key"] = key
    if not sealed:
        record = {k: v for k, v in record.items() if k in ("symbols", "dtype", "length")} | {"format": 1}
    (place / "cache").mkdir()
    (place / "cache" / f"{key}.json").write_text(json.dumps(record))
    (place / "cache" / f"{key}.ids").write_bytes((theirs / f"{other}.ids").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = charseq.get_corpus("text:victim.txt")
    assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT
    assert any("not as charseq wrote it" in str(w.message) for w in caught) == sealed
    again = charseq.get_corpus("text:victim.txt")  # the planted entry was replaced by the text's own
    assert again.vocab.decode(np.asarray(again.ids)) == TEXT


def test_an_edited_entry_is_noticed_and_the_text_encoded_again(place):
    """Other ids of the same length in an entry (its times put back, too) are not used by a
    new run, eval, or a resumed run: the ids are checked against the sealed record's digest."""
    (place / "novel.txt").write_text(TEXT)
    run_cli("train", "--corpus", "text:novel.txt", "--out", "m.npz", *SMALL)
    before = json.loads(run_cli("eval", "m.npz", "--corpus", "text:novel.txt", "--json").stdout)["loss"]
    (ids_path,) = (place / "cache").glob("*.ids")
    times = ids_path.stat()
    data = bytearray(ids_path.read_bytes())
    data[: len(data) // 2] = bytes(reversed(data[: len(data) // 2]))  # the same symbols, in another order
    ids_path.write_bytes(bytes(data))
    os.utime(ids_path, ns=(times.st_atime_ns, times.st_mtime_ns))
    result = run_cli("eval", "m.npz", "--corpus", "text:novel.txt", "--json")
    assert json.loads(result.stdout)["loss"] == before
    assert "are not the ones charseq wrote" in result.stderr
    corpus = charseq.get_corpus("text:novel.txt")
    assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT

    (record_path,) = (place / "cache").glob("*.json")
    record = json.loads(record_path.read_text())
    record["symbols"][0], record["symbols"][1] = record["symbols"][1], record["symbols"][0]  # a swapped vocabulary
    record_path.write_text(json.dumps(record))
    result = run_cli("train", "--resume", "m.npz", "--epochs", 2, "-q", "--sample-length", 0)
    assert "not as charseq wrote it" in result.stderr
    assert json.loads(run_cli("eval", "m.npz", "--corpus", "text:novel.txt", "--json").stdout)["characters"] == \
        len(TEXT)


def test_a_copied_cache_is_checked_by_content_and_not_encoded_again(place, monkeypatch):
    """A cache copied elsewhere (other inodes and times) is vouched for by the ids' digest,
    and then recorded as it now is."""
    from charseq.data import text as textfiles

    (place / "novel.txt").write_text(TEXT)
    charseq.get_corpus("text:novel.txt")
    shutil.copytree(place / "cache", place / "copy")
    monkeypatch.setenv("CHARSEQ_CACHE", str(place / "copy"))
    monkeypatch.setattr(textfiles, "_encode_to_cache", lambda *a, **k: pytest.fail("encoded again"))
    for _ in range(2):
        corpus = charseq.get_corpus("text:novel.txt")
        assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT


def _entry_key(place, name: str = "novel.txt") -> str:
    return charseq.get_corpus(f"text:{place / name}").content_hash


def test_links_planted_in_the_cache_are_replaced_never_written_through(place, monkeypatch):
    """In a cache others may write, a link at an entry's place (its record, its ids, an
    index line, the index itself) must not make charseq write where it points."""
    (place / "novel.txt").write_text(TEXT)
    key, _ = _key_learnt_elsewhere(place, monkeypatch, "novel.txt")
    cache = place / "cache"
    cache.mkdir()
    precious = {name: place / f"precious-{name}" for name in ("json", "ids", "index")}
    for path in precious.values():
        path.write_text("the user's own")
    (cache / f"{key}.json").symlink_to(precious["json"])
    (cache / f"{key}.ids").symlink_to(precious["ids"])
    elsewhere = place / "elsewhere"
    elsewhere.mkdir()
    (cache / "index").symlink_to(elsewhere, target_is_directory=True)
    corpus = charseq.get_corpus("text:novel.txt")
    assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT
    assert all(path.read_text() == "the user's own" for path in precious.values())
    assert list(elsewhere.iterdir()) == [] and not (cache / f"{key}.ids").is_symlink()

    (cache / "index").unlink()
    charseq.get_corpus("text:novel.txt")  # the index is made, and a line of it written
    (line,) = (cache / "index").iterdir()
    line.unlink()
    line.symlink_to(precious["index"])
    (place / "novel.txt").touch()  # new times: the index is read again, and written
    charseq.get_corpus("text:novel.txt")
    assert precious["index"].read_text() == "the user's own"


@pytest.mark.parametrize("what", ["fifo-json", "fifo-ids", "dir-ids", "dir-json", "sparse-json", "index-file",
                                  "index-dangling"])
def test_odd_files_planted_in_the_cache_neither_hang_nor_stop_a_run(place, what):
    """A pipe never ends, a directory cannot be replaced, a sparse file would fill memory: none
    of them stops eval from reading its text (for that run only, where the place is taken),
    nor `charseq cache` from listing and clearing."""
    (place / "novel.txt").write_text(TEXT)
    run_cli("train", "--corpus", "text:novel.txt", "--out", "m.npz", *SMALL)
    before = json.loads(run_cli("eval", "m.npz", "--corpus", "text:novel.txt", "--json").stdout)["loss"]
    cache = place / "cache"
    (ids,) = cache.glob("*.ids")
    record = ids.with_suffix(".json")
    kind, name = what.split("-")
    target = {"json": record, "ids": ids, "file": cache / "index", "dangling": cache / "index"}[name]
    shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dir":
        target.mkdir()
    elif kind == "sparse":
        with open(target, "wb") as sparse:
            sparse.truncate(8 << 30)
    elif kind == "index":
        target.write_text("a file of someone else's")
    else:
        target.symlink_to(place / "nowhere")
    (place / "novel.txt").touch()  # the index is looked at again
    env = {**os.environ, "CHARSEQ_CACHE": str(cache)}
    for args in (["eval", "m.npz", "--corpus", "text:novel.txt", "--json"], ["cache"], ["cache", "--clear"]):
        result = subprocess.run([sys.executable, "-m", "charseq", *args], cwd=place, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0 and "internal error" not in result.stderr, (args, result.stderr)
        if args[0] == "eval":
            assert json.loads(result.stdout)["loss"] == before
    if kind == "sparse":  # a regular file at an entry's place is encoded over (a planted entry is)
        assert not target.exists() or target.stat().st_size < 1 << 20
    else:  # what charseq never replaces: left where it was
        assert os.path.lexists(target)


@pytest.mark.parametrize("mode", [0o666, 0o000])
def test_a_file_planted_at_an_entry_lends_it_no_permissions(place, monkeypatch, mode):
    """A world-writable file at an entry's place would let others edit the ids charseq
    writes over it; an unreadable one would break every later run. The new file has the
    permissions of any new file, and the run and the next one read the text."""
    (place / "novel.txt").write_text(TEXT)
    key, _ = _key_learnt_elsewhere(place, monkeypatch, "novel.txt")
    (place / "cache").mkdir()
    planted = place / "cache" / f"{key}.ids"
    planted.write_bytes(b"")
    os.chmod(planted, mode)
    umask = os.umask(0)
    os.umask(umask)
    for _ in range(2):
        corpus = charseq.get_corpus("text:novel.txt")
        assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT
    assert stat.S_IMODE(planted.stat().st_mode) == 0o666 & ~umask


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="another user's file needs root")
@pytest.mark.parametrize("suffix", ["ids", "json"])
def test_an_entry_file_of_another_users_is_never_used(place, suffix):
    """In a shared cache another user may put a copy of the user's own entry (the same bytes,
    the same sealed record) where theirs was evicted, and change it once a run trusts it."""
    (place / "novel.txt").write_text(TEXT)
    key = _entry_key(place)
    os.chown(place / "cache" / f"{key}.{suffix}", 4242, 4242)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = charseq.get_corpus("text:novel.txt")
    assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT
    assert any("are not the ones charseq wrote" in str(w.message) for w in caught) == (suffix == "ids")
    assert (place / "cache" / f"{key}.{suffix}").stat().st_uid == 0  # encoded again, over it
    entry = json.loads(run_cli("cache", "--json").stdout)["entries"][0]
    assert entry["verified"] and entry["key"] == key


def test_ids_are_read_from_the_file_written_whatever_is_done_to_its_name(place, monkeypatch):
    """The ids are mapped from the file charseq wrote before it is put in the entry's place:
    where it cannot be put there (another user's file in a sticky directory), the text
    serves this run only, read right, and nothing of it is left behind."""
    from charseq.data import cache as cachefiles

    (place / "novel.txt").write_text(TEXT)
    monkeypatch.setattr(cachefiles, "_renamed", lambda temp, target: False)
    with pytest.warns(charseq.CharseqWarning, match="encoded for this run only"):
        corpus = charseq.get_corpus("text:novel.txt")
    assert corpus.vocab.decode(np.asarray(corpus.ids)) == TEXT
    assert [p.name for p in (place / "cache").iterdir() if p.name != "index"] == []


def test_a_copy_of_standard_input_waits_in_a_folder_only_this_user_may_enter(place):
    """Read again by its path (to hash it, then to encode it), the copy must be the file
    written: in a shared cache, a name others could swap for a link would not be."""
    reader = subprocess.Popen([sys.executable, "-m", "charseq", "train", "--corpus", "text:-", "--out", "s.npz", *map(
        str, SMALL)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=place,
        env={**os.environ, "CHARSEQ_CACHE": str(place / "cache")})
    assert reader.stdin is not None
    reader.stdin.write(TEXT.encode())
    reader.stdin.flush()
    deadline = time.monotonic() + 60
    while not list((place / "cache").glob(".spool-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    (folder,) = (place / "cache").glob(".spool-*")
    assert folder.is_dir() and not folder.is_symlink() and stat.S_IMODE(folder.stat().st_mode) == 0o700
    reader.stdin.close()
    assert reader.wait(timeout=120) == 0, reader.stderr.read() if reader.stderr else ""
    assert not list((place / "cache").glob(".spool-*")) and charseq.load(place / "s.npz").training["epoch"] == 1

