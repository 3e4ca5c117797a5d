"""Bundled corpora: the seed's cyclic alphabet, the same over digits, text files, and files
of one item per line."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from charseq import Corpus, Vocabulary, hookimpl
from charseq.errors import UsageError
from charseq.data.lines import load_lines_corpus
from charseq.data.text import (
    glob_roots,
    is_stream,
    load_stream_corpus,
    load_text_corpus,
    resolve_files,
)

# The seed notebook's task (300 windows of 6, hidden 64, clip 5), trained in batches of 20.
# The notebook stepped lr 0.1 along the loss summed over a window, which is lr 0.6 on the
# mean loss per character that charseq uses: `--batch-size 1 --lr 0.6 --warmup 0
# --epochs 100` is its exact update. Batches of 20 at lr 8, after a 300-step warmup
# (without it lr above ~4 diverges for most seeds; with it lr 16 still converges), reach
# the notebook's loss in 180 epochs in about a tenth of the time.
CYCLE_DEFAULTS = {"hidden_size": 64, "seq_len": 6, "optimizer": "sgd", "clip": 5.0, "clip_norm": 0.0,
                  "schedule": "constant", "batch_size": 20, "lr": 8.0, "warmup": 300, "epochs": 180,
                  "input_lr_scale": 1.0, "dropout": 0.0, "model": "rnn"}
CYCLE_WINDOWS = 300


def _cycle(name: str, arg: str | None) -> Corpus:
    """A bundled cycle of symbols (corpora/NAME.txt); ARG is the number of random windows."""
    symbols = resources.files("charseq.corpora").joinpath(f"{name}.txt").read_text("utf-8").strip()
    windows = CYCLE_WINDOWS
    if arg is not None:
        if not arg.isdigit() or int(arg) < 1:
            raise UsageError(f"corpus {name}: ARG is the number of windows, a positive integer, got {arg!r}")
        windows = int(arg)
    vocab = Vocabulary(symbols)
    return Corpus(name, vocab, vocab.encode(symbols), random_windows=windows, defaults=CYCLE_DEFAULTS)


def alphabet(arg: str | None = None) -> Corpus:
    """The seed's task: windows of the cyclic A-Z sequence (Z wraps to A); ARG: window count."""
    return _cycle("alphabet", arg)


def digits(arg: str | None = None) -> Corpus:
    """Windows of the cyclic 0-9 sequence (9 wraps to 0); ARG: window count."""
    return _cycle("digits", arg)


def text(arg: str | None = None, encoding: str = "utf-8", exact: bool = False) -> Corpus:
    """Text files: text:PATH, a file, a directory or a glob such as text:'notes/*.txt'; text:- reads stdin.

    encoding: how the files' bytes become text (--encoding)
    exact: keep \\r\\n and a byte-order mark as they are (--exact-text)
    """
    if not arg:
        raise UsageError("corpus text needs a file: --corpus text:PATH")
    if is_stream(arg):  # standard input or a pipe: read once, into the cache
        return load_stream_corpus(arg, encoding, exact)
    name, files, found = _files(arg, "text")
    # Files a directory or glob found may include a picture: skipped; a file named must be text.
    return _with_roots(load_text_corpus(name, files, encoding, exact, skip_unreadable=found), arg)


def _files(arg: str, default_name: str) -> tuple[str, list[Path], bool]:
    """The corpus's name, its files, and whether a directory or a glob found them (rather
    than the user naming a file)."""
    files = resolve_files(arg)
    name = files[0].stem if len(files) == 1 else Path(arg.split("*")[0]).name or default_name
    literal = Path(arg).expanduser()
    return name, files, literal.is_dir() or (not literal.exists() and any(ch in arg for ch in "*?["))


def _with_roots(corpus: Corpus, arg: str) -> Corpus:
    """The corpus, with the places a new file would join it (no output may go there)."""
    literal = Path(arg).expanduser()
    if literal.is_dir():
        corpus.roots = (os.path.abspath(literal),)  # a directory: any new file in it would join the text
    elif not literal.exists() and any(ch in arg for ch in "*?["):
        corpus.roots = glob_roots(os.path.abspath(literal))  # where a new matching file would join it
    return corpus


# (A factory's declarations are attributes of the function, as docs/plugins.md has them:
# mypy knows no attributes of a function, hence the ignores.)
text.path_arg = True  # type: ignore[attr-defined]  # ARG is a path: a run records it absolute, to find it anywhere
# A run recorded before an option existed read its text as this value does: it resumes so.
text.legacy_options = {"exact": True}  # type: ignore[attr-defined]


def lines(arg: str | None = None, encoding: str = "utf-8") -> Corpus:
    """One item per line (names, words, titles): lines:PATH; each learnt whole, its end predicted.

    encoding: how the files' bytes become text (--encoding)
    """
    if not arg:
        raise UsageError("corpus lines needs a file: --corpus lines:PATH")
    if is_stream(arg):
        raise UsageError(f"corpus lines reads files, not standard input or a pipe ({arg!r}): save the lines to a "
                         "file first")
    name, files, found = _files(arg, "lines")
    return _with_roots(load_lines_corpus(name, files, encoding, skip_unreadable=found), arg)


lines.path_arg = True  # type: ignore[attr-defined]


@hookimpl
def register_corpora(register):
    register("alphabet", alphabet)
    register("digits", digits)
    register("text", text)
    register("lines", lines)
