"""One item per line (`--corpus lines:PATH`): items trained from a fresh state with their
end predicted, a held-out set of items, and generation of whole new items."""

import json

import numpy as np
import pytest

import charseq
from charseq import Corpus, TrainConfig
from charseq.training.batches import Batches
from charseq.data.items import MAX_VAL_ITEMS, evaluate_items, item_hash
from conftest import resign, run_cli

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi"]
# 300 made-up names of 1 to 4 syllables: enough to learn their shape in seconds.
ITEMS = ["".join(SYLLABLES[(i * 7 + k * 3) % 8] for k in range(1 + i % 4)) + "n" * (i % 5 == 0) for i in range(300)]
SMALL = ["--hidden-size", 32, "--batch-size", 16, "--epochs", 6, "--threads", 1, "--lr", 0.01]


@pytest.fixture
def names_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(ITEMS) + "\n")
    return path


@pytest.fixture
def names_model(tmp_path, names_file):
    out = tmp_path / "names.npz"
    run_cli("train", "--corpus", f"lines:{names_file}", *SMALL, "--out", out, "-q", "--sample-length", 0)
    return out


def test_each_batch_is_items_of_one_length_each_from_its_start_to_its_end():
    corpus = Corpus.from_items("names", ITEMS)
    end = corpus.vocab.symbols.index("\n")
    config = TrainConfig(batch_size=16, val_fraction=0.1)
    batches = Batches(corpus, config)
    order = np.random.default_rng(3).permutation(batches.order_size)
    seen = []
    for x, y in batches.epoch(0, None, order):
        assert x.shape == y.shape and x.shape[0] <= 16
        assert (x[:, 0] == end).all() and (y[:, -1] == end).all()  # from the start symbol to the end
        assert (x[:, 1:] != end).all() and (y[:, :-1] != end).all()  # one item each, nothing after its end
        assert np.array_equal(x[:, 1:], y[:, :-1])
        seen += [corpus.vocab.decode(row[:-1]) for row in y]
    assert len(seen) == len(batches.train_items) == len(ITEMS) - 30
    assert sum(1 for _ in batches.epoch(0, None, order)) == batches.steps_per_epoch
    held = {ITEMS[i] for i in batches.val_items}
    assert sorted(seen) == sorted(ITEMS[i] for i in batches.train_items)
    assert not set(batches.train_items) & set(batches.val_items)
    assert held  # the check above is not vacuous


def test_the_batches_of_an_epoch_mix_lengths_in_a_shuffled_order():
    corpus = Corpus.from_items("names", ITEMS)
    batches = Batches(corpus, TrainConfig(batch_size=8, val_fraction=0.1))
    orders = [np.random.default_rng(seed).permutation(batches.order_size) for seed in (1, 2)]
    runs = [[x.shape[1] for x, _ in batches.epoch(0, None, order)] for order in orders]
    assert runs[0] != runs[1] and sorted(runs[0]) == sorted(runs[1])
    assert runs[0] != sorted(runs[0])  # not one length after another


def test_at_most_a_thousand_items_are_held_out_the_same_whatever_the_seed():
    many = [f"n{i}" for i in range(30_000)]
    corpus = Corpus.from_items("many", many)
    first, second = (Batches(corpus, TrainConfig(seed=seed)) for seed in (0, 7))
    assert len(first.val_items) == MAX_VAL_ITEMS
    assert np.array_equal(first.val_items, second.val_items)
    assert len(Batches(Corpus.from_items("names", ITEMS), TrainConfig(val_fraction=0.1)).val_items) == 30
    assert Batches(Corpus.from_items("few", ["ab", "cd"]), TrainConfig()).val_items is None


def test_the_loss_of_items_counts_each_end_as_makemore_does():
    """Scored item by item through the stepper, from a zero state: every character and the end."""
    corpus = Corpus.from_items("names", ITEMS[:40])
    model = charseq.get_model("gru:layers=2", len(corpus.vocab), 16, seed=2)
    end = corpus.vocab.symbols.index("\n")
    total, count = 0.0, 0
    for item in ITEMS[:40]:
        ids = corpus.vocab.encode(item)
        step = model.stepper(1)
        logits = step.feed(np.array([[end]]))
        for target in [*ids, end]:
            z = logits[0].astype(np.float64)
            total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[target]
            count += 1
            logits = step(np.array([target]))
    assert count == sum(len(item) + 1 for item in ITEMS[:40])
    assert evaluate_items(model, corpus.ids, corpus.item_starts) == pytest.approx(total / count, rel=1e-5)


def test_train_then_generate_whole_new_items(names_model, names_file):
    saved = charseq.load(names_model)
    assert saved.item_end == "\n" and saved.format_version == 5
    assert len(saved.seen_items) == len(set(ITEMS))
    history = saved.training["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    out = run_cli("generate", names_model, "--num-samples", 20, "--seed", 1).stdout.splitlines()
    assert len(out) == 20 and all(out) and all(set(line) <= set("".join(ITEMS)) for line in out)
    assert any(line in ITEMS for line in out)  # it has learnt them: --new-only below has work to do
    new = run_cli("generate", names_model, "--num-samples", 20, "--seed", 1, "--new-only").stdout.splitlines()
    assert len(new) == 20 and all(new) and not set(new) & set(ITEMS)


def test_a_prime_starts_each_item_and_json_keeps_items_apart(names_model):
    out = run_cli("generate", names_model, "--num-samples", 5, "--prime", "ka", "--json", "--seed", 2).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 5 and all(r["prime"] == "ka" and "\n" not in r["text"] for r in records)
    capped = run_cli("generate", names_model, "--num-samples", 5, "--length", 2, "--seed", 2).stdout.splitlines()
    assert len(capped) == 5 and max(map(len, capped)) <= 2


def test_generation_of_items_is_reproducible_with_a_seed(names_model):
    runs = [run_cli("generate", names_model, "--num-samples", 8, "--seed", 5).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    assert run_cli("generate", names_model, "--num-samples", 8, "--seed", 6).stdout != runs[0]


@pytest.mark.parametrize("args, message", [
    (["--prime", "ka\nlo"], "a prime starts each item"),
    (["--prime", "kaQ"], "not in the model's vocabulary"),
    (["--num-samples", 0], "--num-samples must be at least 1"),
])
def test_bad_generation_of_items_is_one_line(names_model, args, message):
    result = run_cli("generate", names_model, *args, ok=False)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_new_only_is_for_models_of_items(alphabet_checkpoint):
    result = run_cli("generate", alphabet_checkpoint, "--new-only", ok=False)
    assert result.exit_code == 2 and "trained on items" in result.stderr and result.stderr.count("\n") == 1


def test_a_model_that_knows_its_items_by_heart_says_so(tmp_path):
    path = tmp_path / "two.txt"
    path.write_text("ab\nba\n")
    out = tmp_path / "two.npz"
    run_cli("train", "--corpus", f"lines:{path}", "--hidden-size", 16, "--batch-size", 2, "--epochs", 300, "--lr", 0.05,
            "--dropout", 0, "--threads", 1, "--out", out, "-q", "--sample-length", 0)
    result = run_cli("generate", out, "--new-only", "--sampler", "argmax", ok=False)
    assert result.exit_code == 1 and "learnt its items by heart" in result.stderr, result.output


def test_eval_scores_a_lines_corpus_item_by_item(names_model, names_file):
    saved = charseq.load(names_model)
    result = json.loads(run_cli("eval", names_model, "--corpus", f"lines:{names_file}", "--json").stdout)
    corpus = charseq.get_corpus(f"lines:{names_file}")
    assert result["loss"] == pytest.approx(evaluate_items(saved.model, corpus.ids, corpus.item_starts), rel=1e-6)
    held_out = Batches(corpus, TrainConfig.from_dict(saved.config))
    assert saved.training["history"][-1]["val_loss"] == pytest.approx(
        evaluate_items(saved.model, corpus.ids, corpus.item_starts, held_out.val_items), rel=1e-6)


def test_line_endings_byte_order_marks_and_blank_lines_do_not_make_other_items(tmp_path):
    plain, windows = tmp_path / "plain.txt", tmp_path / "windows.txt"
    plain.write_bytes(b"emma\nolivia\nava\n")
    windows.write_bytes(b"\xef\xbb\xbfemma\r\n\r\nolivia\r\n  \r\nava")
    a, b = charseq.get_corpus(f"lines:{plain}"), charseq.get_corpus(f"lines:{windows}")
    assert a.items() == b.items() == ["emma", "olivia", "ava"]
    assert a.fingerprint == b.fingerprint


def test_a_corpus_of_items_is_not_the_same_text_read_as_a_stream(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("\n" + "\n".join(ITEMS) + "\n")
    assert charseq.get_corpus(f"lines:{path}").fingerprint != charseq.get_corpus(f"text:{path}").fingerprint


@pytest.mark.parametrize("content, message", [
    (b"", "has no lines"),
    (b"\n \n\r\n", "has no lines"),
    (b"short\n" + b"x" * 5000 + b"\n", "line 2 of"),
    ("emma\nolivia\n".encode("utf-16"), "UTF-16"),
    (b"caf\xe9\n", "is not utf-8 text"),
])
def test_bad_lines_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    result = run_cli("train", "--corpus", f"lines:{path}", "--out", tmp_path / "m.npz", ok=False)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_resuming_a_lines_run_refuses_another_list(tmp_path, names_file):
    out = tmp_path / "n.npz"
    run_cli("train", "--corpus", f"lines:{names_file}", *SMALL, "--epochs", 1, "--out", out, "-q", "--sample-length", 0)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(reversed(ITEMS)) + "\n")
    result = run_cli("train", "--resume", out, "--corpus", f"lines:{other}", "--epochs", 2, ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr


def test_the_sample_after_training_lists_items(tmp_path, names_file):
    result = run_cli("train", "--corpus", f"lines:{names_file}", *SMALL, "--epochs", 1, "--out", tmp_path / "n.npz")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"training on names: {len(ITEMS)} items, ") and "30 items held out" in lines[0]
    at = next(i for i, line in enumerate(lines) if line.startswith("samples (10 items"))
    assert len(lines[at + 1 :]) == 10 and all(line.startswith("  ") and line.strip() for line in lines[at + 1 :])


def test_the_item_fingerprints_of_a_checkpoint_are_checked(names_model, tmp_path):
    saved = charseq.load(names_model)
    assert item_hash(ITEMS[0]) in set(saved.seen_items.tolist())
    copy = tmp_path / "copy.npz"
    copy.write_bytes(names_model.read_bytes())
    resign(copy, lambda m: m["items"].update(end="#"))
    result = run_cli("generate", copy, ok=False)
    assert result.exit_code == 2 and "end symbol" in result.stderr, result.stderr


def test_a_lines_run_takes_the_suggested_settings_unless_told_otherwise(tmp_path, names_file):
    from charseq.data.lines import LINES_DEFAULTS

    run = charseq.Run.start(f"lines:{names_file}", out=tmp_path / "n.npz")
    assert run.spec.model["name"] == "gru" and run.spec.model["options"]["layers"] == 2
    assert (run.config.hidden_size, run.config.lr, run.config.epochs, run.config.val_fraction) == \
        (LINES_DEFAULTS["hidden_size"], LINES_DEFAULTS["lr"], LINES_DEFAULTS["epochs"], 0.1)
    assert charseq.Run.start(f"lines:{names_file}", out=tmp_path / "m.npz", hidden_size=40).config.hidden_size == 40


def test_new_only_checks_what_is_printed_after_a_stop_cuts_it(names_model):
    """--stop cuts an item before it is checked against the training file: a cut item that is
    in the file ("ka" from "kalo") is left out too."""
    out = run_cli("generate", names_model, "--num-samples", 30, "--seed", 1, "--new-only", "--stop", "o").stdout
    assert len(out.splitlines()) == 30 and not set(out.splitlines()) & set(ITEMS)
    assert all(out.splitlines()) and "o" not in out


def test_a_length_of_zero_is_no_item(names_model):
    result = run_cli("generate", names_model, "--length", 0, ok=False)
    assert result.exit_code == 2 and "--length" in result.stderr and result.stderr.count("\n") == 1


def test_a_binary_file_among_lines_files_is_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "a.txt").write_text("\n".join(ITEMS[:100]))
    (folder / "b.bin").write_bytes(bytes(range(256)) * 4)
    result = run_cli("train", "--corpus", f"lines:{folder}", *SMALL, "--epochs", 1, "--out", tmp_path / "m.npz", "-q",
                     "--sample-length", 0)
    assert "warning: skipped" in result.stderr and "b.bin" in result.stderr
    assert charseq.load(tmp_path / "m.npz").seen_items.size == len(set(ITEMS[:100]))
    alone = run_cli("train", "--corpus", f"lines:{folder / 'b.bin'}", "--out", tmp_path / "n.npz", ok=False)
    assert alone.exit_code == 2 and alone.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--encoding", "nosuch"], "unknown encoding 'nosuch'"),
    (["--encoding", "base64"], "not a text encoding"),
])
def test_bad_encodings_for_lines_are_one_line(names_file, tmp_path, args, message):
    result = run_cli("train", "--corpus", f"lines:{names_file}", *args, "--out", tmp_path / "m.npz", ok=False)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_lines_from_standard_input_is_refused_in_one_line(tmp_path):
    result = run_cli("train", "--corpus", "lines:-", "--out", tmp_path / "m.npz", ok=False)
    assert result.exit_code == 2 and "save the lines to a file" in result.stderr


def test_a_checkpoint_whose_items_end_otherwise_does_not_resume_on_this_corpus(names_model, names_file, tmp_path):
    copy = tmp_path / "copy.npz"
    copy.write_bytes(names_model.read_bytes())
    resign(copy, lambda m: m["items"].update(end="a"))
    result = run_cli("train", "--resume", copy, "--corpus", f"lines:{names_file}", "--epochs", 8, "--out",
                     tmp_path / "out.npz", ok=False)
    assert result.exit_code == 2 and "resume on the corpus it was trained on" in result.stderr, result.stderr
    text = run_cli("train", "--resume", names_model, "--corpus", f"text:{names_file}", "--epochs", 8, "--out",
                   tmp_path / "out.npz", ok=False)
    assert text.exit_code == 2 and "not the text the run trained on" in text.stderr, text.stderr


def test_exact_text_is_for_text_corpora(names_file, tmp_path):
    result = run_cli("train", "--corpus", f"lines:{names_file}", "--exact-text", "--out", tmp_path / "m.npz", ok=False)
    assert result.exit_code == 2 and "corpus 'lines' does not take --exact-text" in result.stderr


def test_a_run_resumed_on_another_kind_of_corpus_is_refused_for_that_reason(tmp_path, names_file):
    """A text run resumed with --corpus lines:... (or the other way round) is refused for the
    corpus, not for an option that was never given (the other corpus's recorded options)."""
    (tmp_path / "novel.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    for corpus, other in ((f"text:{tmp_path / 'novel.txt'}", f"lines:{names_file}"),
                          (f"lines:{names_file}", f"text:{tmp_path / 'novel.txt'}")):
        out = tmp_path / f"{corpus[:4]}.npz"
        run_cli("train", "--corpus", corpus, "--out", out, *SMALL, "-q", "--sample-length", 0)
        result = run_cli("train", "--resume", out, "--corpus", other, ok=False)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"trained on a '{corpus.split(':')[0]}' corpus, not '{other.split(':')[0]}'" in result.stderr
        assert "exact-text" not in result.stderr
