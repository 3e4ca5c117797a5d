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
