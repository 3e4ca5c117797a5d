import numpy as np
import pytest

from charseq import UsageError
from charseq.plugins import corpora


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


def test_text_windows_are_consecutive_and_cover_the_text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghijklmnopqrstuvwxyz0123456789")
    corpus = corpora.text(str(path))
    windows = corpus.windows(5, np.random.default_rng(0))
    assert windows.shape == (7, 6)
    # Each window starts where the previous one's inputs ended: the targets tile the text.
    assert corpus.vocab.decode(windows[:, 1:].reshape(-1)) == "bcdefghijklmnopqrstuvwxyz0123456789"


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: None, "needs a file"),
        (lambda d: str(d / "missing.txt"), "does not exist"),
        (lambda d: str(d), "is not a file"),
        (lambda d: _write(d / "empty.txt", b""), "is empty"),
        (lambda d: _write(d / "latin1.txt", "caf\xe9".encode("latin-1")), "not UTF-8 text .*offset 3"),
    ],
)
def test_bad_text_files_are_usage_errors(tmp_path, make, message):
    with pytest.raises(UsageError, match=message):
        corpora.text(make(tmp_path))


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("text", ["plain ASCII text\nwith lines\n" * 50, "ünïcödé — ✓ mixed with ASCII\n" * 50])
@pytest.mark.parametrize("chunk", [3, 7, 1 << 22])
def test_utf8_bytes_encode_like_text_across_chunk_boundaries(text, chunk, monkeypatch):
    import charseq.corpus
    import charseq.vocab
    from charseq import Corpus

    monkeypatch.setattr(charseq.corpus, "_DECODE_CHUNK_BYTES", chunk)  # cut multibyte characters
    monkeypatch.setattr(charseq.vocab, "_ENCODE_CHUNK", chunk)
    from_bytes = Corpus.from_utf8("t", text.encode("utf-8"))
    from_text = Corpus.from_text("t", text)
    assert from_bytes.vocab == from_text.vocab
    assert np.array_equal(from_bytes.ids, from_text.ids) and from_bytes.ids.dtype == np.uint8
    assert from_bytes.vocab.decode(from_bytes.ids) == text


@pytest.mark.parametrize("chunk", [4, 1 << 22])
def test_bad_byte_offset_is_exact_across_chunks(chunk, monkeypatch):
    import charseq.corpus
    from charseq import Corpus

    monkeypatch.setattr(charseq.corpus, "_DECODE_CHUNK_BYTES", chunk)
    data = "ab✓cdéf".encode("utf-8") + b"\xff" + b"tail"
    offset = data.index(b"\xff")
    with pytest.raises(UsageError, match=rf"bad byte at offset {offset}\)"):
        Corpus.from_utf8("t", data)
