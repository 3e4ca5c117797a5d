import os
from pathlib import Path

import numpy as np
import pytest

from charseq import UsageError
from charseq.plugins import corpora
from charseq.plugins.corpora import text


def test_alphabet_windows_wrap_from_z_to_a():
    corpus = corpora.alphabet()
    assert "".join(corpus.vocab.symbols) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    windows = corpus.windows(6, np.random.default_rng(0))
    assert windows.shape == (300, 7)
    # Every window is a run of consecutive letters modulo 26, and some cross Z -> A.
    assert np.all((np.diff(windows.astype(int), axis=1) % 26) == 1)
    assert np.any(windows[:, 0] > windows[:, -1])


def test_alphabet_suggests_the_seed_task_settings():
    defaults = corpora.alphabet().defaults
    assert (defaults["hidden_size"], defaults["seq_len"], defaults["clip"]) == (64, 6, 5.0)


def test_window_count_argument():
    assert len(corpora.digits("50").windows(4, np.random.default_rng(0))) == 50
    with pytest.raises(UsageError, match="number of windows"):
        corpora.digits("many")


def test_text_corpus_reads_utf8(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("Ünïcode lines\nand more\n", encoding="utf-8")
    corpus = corpora.text(str(path))
    assert corpus.name == "poem" and corpus.vocab.decode(corpus.ids) == path.read_text("utf-8")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: None, "needs a file"),
        (lambda d: str(d / "missing.txt"), "does not exist"),
        (lambda d: str(d / "empty-dir") if (d / "empty-dir").mkdir() is None else "", "has no files"),
        (lambda d: _write(d / "empty.txt", b""), "is empty"),
        (lambda d: _write(d / "latin1.txt", "caf\xe9".encode("latin-1")), "not utf-8 text: bad byte at offset 3"),
    ],
)
def test_bad_text_files_are_usage_errors(tmp_path, make, message):
    with pytest.raises(UsageError, match=message):
        corpora.text(make(tmp_path))


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def small_chunks(monkeypatch):
    import charseq.data.text
    import charseq.data.vocab

    def use(size):
        monkeypatch.setattr(charseq.data.text, "CHUNK_BYTES", size)  # cut multibyte characters
        monkeypatch.setattr(charseq.data.vocab, "_ENCODE_CHUNK", size)

    return use


@pytest.mark.parametrize("content", ["plain ASCII text\nwith lines\n" * 50, "ünïcödé — ✓ mixed with ASCII\n" * 50,
                                     "ascii first " * 30 + "then ✓ü" + " and ascii again" * 30])
@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
def test_files_encode_like_the_text_across_chunk_boundaries(content, chunk, small_chunks, tmp_path, monkeypatch):
    from charseq import Corpus

    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / f"cache-{chunk}"))
    small_chunks(chunk)
    path = tmp_path / "t.txt"
    path.write_text(content, encoding="utf-8")
    from_file, from_text = text(str(path)), Corpus.from_text("t", content)
    assert from_file.vocab == from_text.vocab
    assert np.array_equal(from_file.ids, from_text.ids) and from_file.ids.dtype == np.uint8
    assert from_file.vocab.decode(from_file.ids) == content


@pytest.mark.parametrize("chunk", [4, 1 << 20])
def test_bad_byte_offset_is_exact_across_chunks(chunk, small_chunks, tmp_path):
    small_chunks(chunk)
    data = "ab✓cdéf".encode("utf-8") + b"\xff" + b"tail"
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    offset = data.index(b"\xff")
    with pytest.raises(UsageError, match=rf"bad byte at offset {offset}; try encoding=…"):
        text(str(path))


def test_second_load_maps_the_cache_without_encoding_again(tmp_path, monkeypatch):
    import charseq.data.text

    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "t.txt"
    path.write_text("hello cached world\n" * 100)
    first = text(str(path))
    assert isinstance(first.ids, np.memmap)
    monkeypatch.setattr(charseq.data.text, "_encode_to_cache", lambda *a: pytest.fail("encoded again"))
    second = text(str(path))
    assert np.array_equal(first.ids, second.ids) and second.vocab == first.vocab
    # Edited content is a new key: encoded again, never a stale cache.
    monkeypatch.undo()
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    path.write_text("different text now\n" * 100)
    assert text(str(path)).vocab.decode(text(str(path)).ids[:9]) == "different"


def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "t.txt"
    path.write_text("abc" * 100)
    text(str(path))
    (ids_file,) = (tmp_path / "cache").glob("*.ids")
    ids_file.write_bytes(b"\0" * 10)  # truncated
    assert text(str(path)).vocab.decode(text(str(path)).ids) == "abc" * 100


def test_directory_and_glob_concatenate_in_sorted_order(tmp_path):
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "b.txt").write_text("BBB")
    (notes / "a.txt").write_text("AAA")
    (notes / "sub" / "c.txt").write_text("CCC")
    (notes / ".hidden").write_text("HHH")
    by_dir = text(str(notes))
    assert by_dir.vocab.decode(by_dir.ids) == "AAABBBCCC"
    by_glob = text(str(notes / "*.txt"))
    assert by_glob.vocab.decode(by_glob.ids) == "AAABBB" and by_glob.name == "notes"
    with pytest.raises(UsageError, match="no files match"):
        text(str(notes / "*.md"))


def test_other_encodings(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café olé".encode("latin-1"))
    with pytest.raises(UsageError, match="not utf-8 text: bad byte at offset 3"):
        text(str(path))
    corpus = text(str(path), encoding="latin-1")
    assert corpus.vocab.decode(corpus.ids) == "café olé"
    with pytest.raises(UsageError, match="unknown encoding 'klingon'"):
        text(str(path), encoding="klingon")


def test_more_than_256_symbols_widen_the_ids(tmp_path):
    path = tmp_path / "wide.txt"
    content = "".join(chr(0x4E00 + i) for i in range(300)) * 3
    path.write_text(content, encoding="utf-8")
    corpus = text(str(path))
    assert corpus.ids.dtype == np.int32 and corpus.vocab.decode(corpus.ids) == content


def test_a_changed_file_is_noticed_even_with_its_size_and_time_kept(tmp_path, monkeypatch):
    """The quick index is keyed by the change time too, which no user can set back."""
    monkeypatch.setenv("CHARSEQ_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "t.txt"
    path.write_text("abcdefgh" * 50)
    first = text(str(path))
    stamp = path.stat()
    path.write_text("hgfedcba" * 50)  # same size
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same modification time
    assert path.stat().st_size == stamp.st_size and path.stat().st_mtime_ns == stamp.st_mtime_ns
    second = text(str(path))
    assert second.vocab.decode(second.ids[:8]) == "hgfedcba" and second.fingerprint != first.fingerprint


def test_a_file_reached_twice_is_read_once(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("alpha ")
    (folder / "sub" / "b.txt").symlink_to(folder / "sub" / "a.txt")  # the same file again
    (folder / "sub" / "loop").symlink_to(folder)  # a ** loop back to the top
    for spec in (str(folder), str(folder / "**" / "*.txt")):
        corpus = text(spec)
        assert corpus.vocab.decode(corpus.ids) == "alpha ", spec


def test_a_path_that_exists_is_taken_literally_even_with_glob_characters(tmp_path):
    (tmp_path / "notes[1].txt").write_text("literal")
    (tmp_path / "notes1.txt").write_text("the glob would pick me")
    corpus = text(str(tmp_path / "notes[1].txt"))
    assert corpus.vocab.decode(corpus.ids) == "literal"


@pytest.mark.parametrize("encoding", ["base64", "rot13", "zlib"])
def test_a_codec_that_is_not_a_text_encoding_is_refused(tmp_path, encoding):
    path = tmp_path / "t.txt"
    path.write_text("hello")
    with pytest.raises(UsageError, match=f"'{encoding}' is not a text encoding"):
        text(str(path), encoding=encoding)


def test_an_unusable_cache_is_named(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("hello world")
    (tmp_path / "a-file").write_text("")
    for bad, words in ((tmp_path / "a-file", "it is not a directory"), (Path("/proc/cache"), "")):
        monkeypatch.setenv("CHARSEQ_CACHE", str(bad))
        with pytest.raises(UsageError, match=f"CHARSEQ_CACHE='{bad}' cannot hold charseq's cache.*{words}"):
            text(str(path))


def test_an_unusable_default_cache_falls_back_with_a_warning(tmp_path, monkeypatch):
    from charseq import CharseqWarning

    path = tmp_path / "t.txt"
    path.write_text("hello world")
    monkeypatch.delenv("CHARSEQ_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-cache-here")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.warns(CharseqWarning, match="cannot be used .*using .*charseq-cache-"):
        corpus = text(str(path))
    assert corpus.vocab.decode(corpus.ids) == "hello world"


def test_a_pipe_is_refused_with_what_to_do_where_files_are_read_twice(tmp_path):
    """The text corpus reads a pipe once, into the cache (tests/data/test_text_input.py); the
    files it resolves to are read twice, so resolve_files itself still refuses one."""
    from charseq.data.text import resolve_files

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="is a pipe, not a file; save the text to a file first"):
        resolve_files(str(tmp_path / "fifo"))
