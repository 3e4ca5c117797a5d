"""Every kind of bad input gets one line on stderr saying what is wrong, exit code 2 (bad
usage) or 1 (a failure), and never a traceback."""

import os
import shutil

import pytest

from conftest import run_cli

FILES = {
    "ok.txt": "the quick brown fox jumps over the lazy dog\n" * 100,
    "short.txt": "hello",
    "empty.txt": "",
}


@pytest.fixture
def place(tmp_path, alphabet_checkpoint, monkeypatch):
    """A directory of good and bad inputs, the current directory during the test."""
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "latin1.txt").write_bytes("café au lait, ".encode("latin-1") * 100)
    (tmp_path / "bogus.npz").write_bytes(b"not a zip archive")
    (tmp_path / "empty-dir").mkdir()
    shutil.copy(alphabet_checkpoint, tmp_path / "model.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


USAGE = 2
CASES = [
    # what is wrong, the command, the exit code, words the one line must hold
    ("missing file", "train --corpus text:nope.txt", USAGE, "'nope.txt' does not exist"),
    ("directory without files", "train --corpus text:empty-dir", USAGE, "directory 'empty-dir' has no files"),
    ("empty file", "train --corpus text:empty.txt", USAGE, "is empty"),
    ("shorter than one window", "train --corpus text:short.txt", USAGE, "too short for 32 streams"),
    ("binary file", "train --corpus text:binary.bin", USAGE, "'binary.bin' is not utf-8 text: bad byte at offset 128"),
    ("not UTF-8", "train --corpus text:latin1.txt", USAGE, "is not utf-8 text: bad byte at offset 3; try --encoding"),
    ("unknown corpus", "train --corpus nope", USAGE, "unknown corpus 'nope'; known: alphabet, digits, lines, text"),
    ("unknown sampler", "generate model.npz --sampler nope", USAGE,
     "unknown sampler 'nope'; known: argmax, min-p, temperature, top-k, top-p"),
    ("unknown callback", "train --corpus alphabet --callback nope", USAGE,
     "unknown callback 'nope'; known: checkpoint, early-stopping, metrics"),
    ("malformed NAME:ARG", "train --corpus text:", USAGE, "malformed 'text:': expected NAME or NAME:ARG"),
    ("malformed options", "generate model.npz --sampler top-k:k", USAGE, "malformed option 'k': expected key=value"),
    ("prime outside the vocabulary", "generate model.npz --prime AB!?", USAGE,
     "2 characters not in the model's vocabulary: '!', '?'; --skip-unknown leaves them out"),
    ("temperature negative", "generate model.npz --temperature -1", USAGE, "temperature must be a positive number"),
    ("temperature NaN", "generate model.npz --temperature nan", USAGE, "temperature must be a positive number"),
    ("negative length", "generate model.npz --length -1", USAGE, "Invalid value for '--length'"),
    ("zero samples", "generate model.npz --num-samples 0", USAGE, "num-samples must be at least 1"),
    ("zero hidden size", "train --corpus alphabet --hidden-size 0", USAGE, "hidden-size must be a whole number of at least 1"),
    ("negative window", "train --corpus alphabet --seq-len -3", USAGE, "seq-len must be a whole number of at least 1"),
    ("zero batch", "train --corpus alphabet --batch-size 0", USAGE, "batch-size must be a whole number of at least 1"),
    ("zero epochs", "train --corpus alphabet --epochs 0", USAGE, "epochs must be a whole number of at least 1"),
    ("batch larger than the data", "train --corpus text:ok.txt --batch-size 1000", USAGE,
     "too short for 1000 streams"),
    ("batch larger than the windows", "train --corpus alphabet --batch-size 301", USAGE,
     "batch size 301 is larger than the 300 training windows"),
    ("output directory missing", "train --corpus alphabet --out no/such/m.npz", USAGE,
     "--out: directory 'no/such' does not exist"),
    ("output is a directory", "train --corpus alphabet --out empty-dir", USAGE, "--out 'empty-dir' is a directory"),
    ("output in /proc", "train --corpus alphabet --out /proc/m.npz", USAGE,
     "--out '/proc/m.npz' lies in /proc, which holds devices and processes, not files"),
    ("output in /dev", "train --corpus alphabet --out /dev/stdout", USAGE, "lies in /dev"),
    ("output named as a directory", "train --corpus alphabet --out new.npz/", USAGE, "'new.npz/' names a directory"),
    ("not a checkpoint", "generate bogus.npz", USAGE, "'bogus.npz' is not a charseq checkpoint (not an .npz archive)"),
    ("text as a checkpoint", "eval ok.txt --corpus text:ok.txt", USAGE, "'ok.txt' is not a charseq checkpoint"),
    ("directory as a checkpoint", "generate empty-dir", USAGE, "checkpoint 'empty-dir' is a directory"),
    ("resume from a non-checkpoint", "train --resume bogus.npz", USAGE, "is not a charseq checkpoint"),
    ("resume with other settings", "train --resume model.npz --lr 0.5", USAGE,
     "--lr 0.5 differs from the resumed run's 8.0; a resumed run keeps its settings"),
    ("no corpus", "train", USAGE, "missing option --corpus (or --resume CHECKPOINT)"),
    ("diverging run", "train --corpus alphabet --optimizer sgd --lr 3e38 --clip 0 --warmup 0 --out new.npz", 1,
     "training diverged at step 2 (loss is inf); try a lower --lr"),
    ("unknown option", "train --corpus alphabet --learning-rate 3", USAGE,
     "No such option '--learning-rate'. (see 'charseq train --help')"),
    ("option a sampler does not take", "generate model.npz --sampler argmax:temperature=0.5", USAGE,
     "sampler 'argmax' has no option 'temperature'; its options are none"),
    ("option of the wrong type", "train --corpus alphabet --epochs many", USAGE,
     "Invalid value for '--epochs': 'many' is not a valid integer"),
    ("unknown command", "trian", USAGE, "No such command 'trian'"),
    ("negative training seed", "train --corpus alphabet --seed -1", USAGE, "seed must be a whole number of at least 0"),
    ("negative sampling seed", "generate model.npz --seed -1", USAGE, "Invalid value for '--seed'"),
    ("evaluation windows of nothing", "eval model.npz --corpus alphabet --seq-len 0", USAGE,
     "Invalid value for '--seq-len'"),
    ("callback option of the wrong type", "train --corpus alphabet --callback checkpoint:every=abc", USAGE,
     "every must be a whole number, got 'abc'"),
    ("empty callback option", "train --corpus alphabet --callback metrics:path=", USAGE, "option 'path' has no value"),
    ("a codec that is not text", "train --corpus text:ok.txt --encoding base64", USAGE,
     "'base64' is not a text encoding"),
    ("plot of a binary file", "plot binary.bin", USAGE, "'binary.bin' is not text: is it a --metrics file?"),
    ("min-delta without patience", "train --corpus alphabet --min-delta 0.1", USAGE, "go with --patience"),
    ("drop-callback without resume", "train --corpus alphabet --drop-callback metrics", USAGE, "it needs --resume"),
    ("new run over a checkpoint", "train --corpus alphabet --out model.npz", USAGE,
     "holds a checkpoint of another run"),
    ("a model larger than the machine", "train --corpus alphabet --hidden-size 1000000", USAGE,
     "use a smaller --hidden-size"),
    ("windows larger than the machine", "train --corpus alphabet --seq-len 1000000000", USAGE, "this run needs about"),
    ("an absurd count", "train --corpus alphabet --warmup " + "9" * 401, USAGE, "warmup must be at most 2**53"),
    ("utf-16 without a byte-order mark", "train --corpus text:ok.txt --encoding utf-16", USAGE,
     "is not utf-16 text"),
    ("resume with fewer epochs", "train --resume model.npz --epochs 10", USAGE,
     "--epochs 10 is fewer than the 180 the run has done"),
    ("an unknown model", "train --corpus alphabet --model mamba", USAGE,
     "unknown model 'mamba'; known: gru, lstm, rnn, transformer"),
    ("a model option that does not exist", "train --corpus alphabet --model lstm:depth=2", USAGE,
     "model 'lstm' has no option 'depth'; its options are layers"),
    ("no layers", "train --corpus alphabet --model gru:layers=0", USAGE, "layers must be a whole number of at least 1"),
    ("layers not a number", "train --corpus alphabet --model gru:layers=two", USAGE,
     "model 'gru': layers must be a whole number, got 'two'"),
    ("a model option charseq sets", "train --corpus alphabet --model rnn:hidden_size=8", USAGE,
     "hidden_size is not a model option; charseq sets it (--hidden-size, --seed)"),
    ("a model option without a value", "train --corpus alphabet --model lstm:layers=", USAGE, "has no value"),
    ("another model on resume", "train --resume model.npz --model lstm", USAGE,
     "--model lstm differs from the resumed run's rnn; a resumed run keeps its model"),
]


@pytest.mark.parametrize("what,command,code,words", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gets_one_line_and_an_exit_code(place, what, command, code, words):
    before = {p.name: p.read_bytes() for p in place.iterdir() if p.is_file()}
    result = run_cli(*command.split(), ok=False)
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert {p.name: p.read_bytes() for p in place.iterdir() if p.is_file()} == before  # and nothing lost


def test_a_diverging_run_leaves_the_last_good_checkpoint_untouched(place):
    before = (place / "model.npz").read_bytes()
    result = run_cli("train", "--corpus", "alphabet", "--optimizer", "sgd", "--lr", "3e38", "--clip", "0",
                     "--warmup", "0", "--out", "model.npz", "--force", ok=False)
    assert result.exit_code == 1 and "try a lower --lr" in result.stderr
    assert (place / "model.npz").read_bytes() == before
    assert sorted(p.name for p in place.iterdir() if p.name.startswith(".")) == []  # no temporary files left


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_update_past_floats_range_in_a_runs_last_step_is_divergence_not_a_save(place, optimizer):
    """A run of one step: its update makes the weights infinite, and no later step's loss
    check would see it."""
    (place / "small.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    before = (place / "model.npz").read_bytes()
    result = run_cli("train", "--corpus", "text:small.txt", "--lr", "1e308", "--optimizer", optimizer, "--hidden-size",
                     "8", "--epochs", "1", "--batch-size", "8", "--out", "model.npz", "--force", "--sample-length", "0",
                     ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "diverged by step 1 (the weights are no longer finite); try a lower --lr" in result.stderr
    assert (place / "model.npz").read_bytes() == before


def test_skip_unknown_leaves_out_what_the_model_does_not_know(place):
    result = run_cli("generate", "model.npz", "--prime", "AB!C?", "--length", "3", "--sampler", "argmax",
                     "--skip-unknown")
    assert result.stdout == "ABCDEF\n"
    assert result.stderr == "charseq: left out 2 unknown characters of the prime: '!', '?'\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root (the /proc case covers it)")
def test_unwritable_output_directory_is_refused_before_training(place):
    locked = place / "locked"
    locked.mkdir(mode=0o555)
    result = run_cli("train", "--corpus", "alphabet", "--out", locked / "m.npz", ok=False)
    assert result.exit_code == 2 and "is not writable" in result.stderr and "epoch" not in result.stdout
