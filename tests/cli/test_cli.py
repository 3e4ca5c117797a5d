"""The CLI end to end, in-process with click's CliRunner."""

import importlib.util
import os
import re

import pytest

import charseq
from charseq.cli import cli
from charseq.installation import install_command
from conftest import run_cli

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"


def _cycle(symbols: str, start: int, length: int) -> str:
    return "".join(symbols[(start + k) % len(symbols)] for k in range(length))


def test_alphabet_task_continues_abcdef(alphabet_checkpoint):
    result = run_cli("generate", alphabet_checkpoint, "--prime", "ABCDEF", "--length", 20, "--sampler", "argmax")
    assert result.output == "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"


@pytest.mark.parametrize("symbols,fixture", [(ALPHABET, "alphabet_checkpoint"), (DIGITS, "digits_checkpoint")])
def test_every_six_symbol_prime_continues_for_20_across_the_wrap(symbols, fixture, request):
    path = request.getfixturevalue(fixture)
    for start in range(len(symbols)):
        prime = _cycle(symbols, start, 6)
        result = run_cli("generate", path, "--prime", prime, "--length", 20, "--sampler", "argmax")
        assert result.output == prime + _cycle(symbols, start + 6, 20) + "\n", f"prime {prime}"


def test_train_prints_progress_checkpoint_and_sample(tmp_path):
    out = tmp_path / "a.npz"
    result = run_cli("train", "--corpus", "alphabet", "--epochs", 3, "--out", out, "--progress", "--all-epochs")
    lines = result.stdout.splitlines()
    assert re.match(r"training on alphabet: 26 characters, 26 symbols, rnn H=64 T=6 B=20 sgd lr=8 clip=5 warmup=300 "
                    r"epochs=3", lines[0])
    assert sum(bool(re.search(r"^epoch +\d/3  loss \d\.\d{4}", line)) for line in lines) == 3
    assert any(line.startswith(f"saved {out} after 3 epochs") for line in lines)
    # the corpus's opening, then the model's continuation after a mark the text does not hold
    assert re.search(r"^sample \(the corpus's first 6 characters, then the model's 20 after »\):\nABCDEF»[A-Z]{20}$",
                     result.stdout, re.M), result.stdout
    assert "step/s" in result.stderr  # the progress bar
    assert charseq.load(out).progress["epoch"] == 3


def test_no_progress_bar_off_a_terminal(tmp_path):
    result = run_cli("train", "--corpus", "digits:20", "--epochs", 2, "--out", tmp_path / "m.npz")
    assert result.stderr == "" and "epoch 2/2" in result.stdout


def test_seed_notebook_update_reproduces_its_loss(tmp_path):
    """Batch 1 at lr 0.6 per character is the notebook's lr 0.1 on the loss summed over a
    window of 6: it must reach the notebook's ~0.0006 per window (0.0001 per character)."""
    out = tmp_path / "seed.npz"
    run_cli("train", "--corpus", "alphabet", "--batch-size", 1, "--lr", 0.6, "--warmup", 0, "--epochs", 100,
            "--out", out, "-q")
    assert charseq.load(out).progress["loss"] * 6 < 0.0007


def test_default_alphabet_run_reaches_the_notebook_loss(alphabet_checkpoint):
    assert charseq.load(alphabet_checkpoint).progress["loss"] * 6 < 0.0006


def test_train_options_reach_the_checkpoint(tmp_path):
    out = tmp_path / "m.npz"
    run_cli("train", "--corpus", "digits:40", "--hidden-size", 8, "--seq-len", 4, "--batch-size", 5,
            "--epochs", 2, "--lr", 0.05, "--clip", 1, "--warmup", 7, "--seed", 3, "--out", out, "-q")
    saved = charseq.load(out)
    assert saved.model.hidden_size == 8
    chosen = {"hidden_size": 8, "seq_len": 4, "batch_size": 5, "epochs": 2, "lr": 0.05, "clip": 1.0, "warmup": 7,
              "seed": 3}
    assert {k: saved.config[k] for k in chosen} == chosen
    assert saved.config["optimizer"] == "sgd"  # the digits corpus's suggestion
    assert saved.progress["step"] == 2 * (40 // 5)


def test_default_out_is_named_after_the_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "digits", "--epochs", 1, "-q", "--sample-length", 0)
    assert (tmp_path / "digits.npz").is_file()


def test_train_and_generate_on_a_text_file(tmp_path):
    text = tmp_path / "song.txt"
    text.write_text("la la la, do re mi. " * 40, encoding="utf-8")
    out = tmp_path / "song.npz"
    run_cli("train", "--corpus", f"text:{text}", "--hidden-size", 32, "--seq-len", 10, "--batch-size", 8,
            "--epochs", 15, "--out", out, "-q")
    assert charseq.load(out).corpus == "song"
    result = run_cli("generate", out, "--prime", "la la", "--length", 15, "--sampler", "argmax")
    continuation = result.output.rstrip("\n")
    assert continuation.startswith("la la") and len(continuation) == 20
    assert set(continuation) <= set("la ,doremi.")
    assert " la" in continuation[5:]  # it learnt the text, not noise


def test_early_stopping_from_the_command_line(tmp_path):
    out = tmp_path / "m.npz"
    result = run_cli("train", "--corpus", "digits:20", "--epochs", 500, "--patience", 0, "--min-delta", 10,
                     "--out", out)
    saved = charseq.load(out)
    assert saved.progress["epoch"] == 2  # nothing improves by 10 nats: stop at epoch 2
    weights = saved.progress["weights_epoch"]
    assert weights == 1  # the best (first) epoch's weights are put back, and the summary says so
    epoch_1 = [h for h in saved.training["history"] if h["epoch"] == 1][-1]
    assert f"stopped early at epoch 2 by early-stopping; saved {out} with the weights of epoch 1, " \
           f"loss {epoch_1['loss']:.4g} nats/char" in result.output


def test_checkpoint_every_and_named_callbacks(tmp_path):
    template = tmp_path / "ckpt-{epoch}.npz"
    run_cli("train", "--corpus", "digits:20", "--epochs", 4, "--out", tmp_path / "final.npz", "-q",
            "--callback", f"checkpoint:path={template},every=2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-2.npz", "ckpt-4.npz", "final.npz"]


def test_temperature_sampling_with_a_seed_is_reproducible(alphabet_checkpoint):
    args = ("generate", alphabet_checkpoint, "--prime", "A", "--length", 60, "--temperature", 3.0)
    first = run_cli(*args, "--seed", 1).output
    assert first == run_cli(*args, "--seed", 1).output
    assert first != run_cli(*args, "--seed", 2).output
    assert first.startswith("A") and len(first) == 62


def test_num_samples(alphabet_checkpoint):
    result = run_cli("generate", alphabet_checkpoint, "--prime", "KL", "--length", 5, "--sampler", "argmax",
                     "--num-samples", 3)
    line = "─" * 20  # between two samples, a line of a character the model cannot write
    assert result.output == f"KLMNOPQ\n{line}\nKLMNOPQ\n{line}\nKLMNOPQ\n"


@pytest.mark.parametrize("command", ["plugins", "corpora", "samplers", "callbacks", "models"])
def test_listings(command):
    output = run_cli(command).output
    expected = {"plugins": ["charseq.plugins.corpora", "charseq.plugins.samplers", "charseq.plugins.callbacks",
                            "charseq.plugins.models", "charseq.plugins.export", "charseq.plugins.serve",
                            "charseq.plugins.sweep"],
                "corpora": ["alphabet", "digits", "lines", "text"],
                "samplers": ["argmax", "min-p", "temperature", "top-k", "top-p"],
                "callbacks": ["checkpoint", "early-stopping", "metrics"],
                "models": ["gru", "lstm", "rnn", "transformer"]}[command]
    lines = [line for line in output.splitlines() if not line.startswith(" ")]  # options are indented below
    assert len(lines) == len(expected)
    for line, name in zip(lines, expected):
        assert line.startswith(name)
    if command == "plugins":
        assert f"(charseq {charseq.__version__})" in lines[0] and "corpus: alphabet, digits, text, lines" in lines[0]


def test_version():
    assert run_cli("--version").output.strip() == f"charseq, version {charseq.__version__}"


@pytest.mark.parametrize("command", [[], ["train"], ["generate"], ["plugins"], ["corpora"], ["samplers"],
                                     ["callbacks"]])
def test_help_on_every_command(command):
    assert "Usage: charseq" in run_cli(*command, "--help").output


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, alphabet_checkpoint):
    def boom(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(charseq.decoding.generate, "stream", boom)
    result = run_cli("generate", alphabet_checkpoint, ok=False)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: internal error: RuntimeError: something inside broke (for the traceback, run charseq --debug generate "
        "...)")
    result = run_cli("--debug", "generate", alphabet_checkpoint, ok=False)
    assert isinstance(result.exception, RuntimeError)


@pytest.mark.parametrize("command,names", [("corpora", ["alphabet", "digits", "lines", "text"]),
                                           ("samplers", ["argmax", "min-p", "temperature", "top-k", "top-p"]),
                                           ("callbacks", ["checkpoint", "early-stopping", "metrics"])])
def test_listings_as_json(command, names):
    import json

    items = json.loads(run_cli(command, "--json").output)
    assert [item["name"] for item in items] == names
    assert all(item["help"] and item["plugin"].startswith("charseq.plugins.") for item in items)


def test_plugins_as_json():
    import json

    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json").output)}
    assert set(plugins["charseq.plugins.samplers"]["registers"]["sampler"]) == {
        "argmax", "temperature", "top-k", "top-p", "min-p"}
    assert plugins["charseq.plugins.corpora"]["version"] == charseq.__version__


def _complete(words: str) -> list[str]:
    from click.testing import CliRunner

    env = {"_CHARSEQ_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = CliRunner().invoke(cli, [], env=env, prog_name="charseq")
    return [line.split(",", 1)[1] for line in result.output.splitlines()]


def test_shell_completion_of_commands_and_plugin_names():
    assert _complete("charseq gen") == ["generate"]
    assert _complete("charseq train --corpus al") == ["alphabet"]
    assert _complete("charseq generate m.npz --sampler top") == ["top-k", "top-p"]


def test_stop_and_max_length(alphabet_checkpoint):
    stopped = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--sampler", "argmax", "--stop", "JK")
    assert stopped.output == "ABCDEFGHI\n"
    bounded = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--sampler", "argmax", "--max-length", 5)
    assert bounded.output == "ABCDEFGH\n"
    several = run_cli("generate", alphabet_checkpoint, "--prime", "X", "--sampler", "argmax", "--stop", "C",
                      "--num-samples", 2)
    assert several.output == f"XYZAB\n{'─' * 20}\nXYZAB\n"


def test_new_samplers_from_the_command_line(alphabet_checkpoint):
    for spec in ("top-k:k=1", "top-p:p=0.5", "min-p:p=0.9"):  # each keeps only the top symbol here
        result = run_cli("generate", alphabet_checkpoint, "--prime", "ABCDEF", "--length", 10, "--sampler", spec,
                         "--seed", 1)
        assert result.output == "ABCDEFGHIJKLMNOP\n", spec
    for spec in ("top-k:k=nope", "top-p:p=x", "min-p:p=true", "temperature:temperature=hot"):
        result = run_cli("generate", alphabet_checkpoint, "--prime", "A", "--length", 5, "--sampler", spec, ok=False)
        assert result.exit_code == 2 and "internal error" not in result.output, spec



@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 300, encoding="utf-8")
    return path


def test_text_training_reports_validation_and_writes_metrics(small_text, tmp_path):
    import json

    out, metrics = tmp_path / "m.npz", tmp_path / "m.jsonl"
    result = run_cli("train", "--corpus", f"text:{small_text}", "--hidden-size", 32, "--seq-len", 16,
                     "--batch-size", 8, "--epochs", 2, "--eval-every", 10, "--metrics", metrics, "--out", out)
    assert re.search(r"^epoch 2/2  loss \d\.\d{4}  val \d\.\d{4} \(\d\.\d{3} bpc\)  [\d,]+ chars/s", result.stdout, re.M)
    assert "held out" in result.stdout.splitlines()[0] and "validation" in result.stdout
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(steps) and steps[0] == 10 and len(records) >= 4
    for record in records:
        assert {"step", "epoch", "loss", "val_loss", "bpc", "val_bpc", "lr", "chars_per_sec", "wall_time"} <= set(record)
    assert records[-1]["val_loss"] < records[0]["val_loss"]


def test_eval_prints_loss_bits_and_perplexity(small_text, tmp_path):
    import json
    import math

    out = tmp_path / "m.npz"
    run_cli("train", "--corpus", f"text:{small_text}", "--hidden-size", 32, "--epochs", 3, "--batch-size", 8,
            "--seq-len", 16, "-q", "--out", out)
    line = run_cli("eval", out, "--corpus", f"text:{small_text}").output
    assert re.match(r"play: 12,900 characters, loss \d\.\d{4} nats/char, \d\.\d{4} bits/char, perplexity \d+\.\d{3}", line)
    data = json.loads(run_cli("eval", out, "--corpus", f"text:{small_text}", "--json").output)
    assert data["bpc"] == pytest.approx(data["loss"] / math.log(2)) and data["characters"] == 12900
    # A text with fewer symbols maps onto the model's vocabulary; one with more is refused.
    subset = tmp_path / "subset.txt"
    subset.write_text("to be or not to be " * 20)
    assert json.loads(run_cli("eval", out, "--corpus", f"text:{subset}", "--json").output)["loss"] > 0
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("xyz" * 50)
    result = run_cli("eval", out, "--corpus", f"text:{foreign}", ok=False)
    assert result.exit_code == 2 and "does not know: 'x', 'y', 'z'" in result.output


def test_plot_draws_the_curves(small_text, tmp_path):
    pytest.importorskip("matplotlib")
    metrics, picture = tmp_path / "m.jsonl", tmp_path / "loss.png"
    run_cli("train", "--corpus", f"text:{small_text}", "--hidden-size", 32, "--seq-len", 16, "--batch-size", 8,
            "--epochs", 3, "--eval-every", 5, "--metrics", metrics, "-q", "--out", tmp_path / "m.npz")
    assert run_cli("plot", metrics, "-o", picture).output == f"wrote {picture}\n"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000


def test_plot_replaces_its_own_picture_but_another_file_only_with_force(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    for suffix in (".png", ".svg", ".pdf"):
        picture = tmp_path / f"loss{suffix}"
        run_cli("plot", metrics, "-o", picture)
        drawn = picture.stat().st_mtime_ns
        run_cli("plot", metrics, "-o", picture)  # its own picture, drawn again: replaced without asking
        assert picture.stat().st_mtime_ns >= drawn and picture.read_bytes()
    mine = tmp_path / "holiday.png"
    mine.write_bytes(b"\x89PNG\r\n\x1a\n a picture of the user's")
    result = run_cli("plot", metrics, "-o", mine, ok=False)
    assert result.exit_code == 2 and "already exists" in result.stderr and "--force" in result.stderr
    assert mine.read_bytes() == b"\x89PNG\r\n\x1a\n a picture of the user's"
    run_cli("plot", metrics, "-o", mine, "--force")
    assert mine.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and mine.stat().st_size > 10_000
    result = run_cli("plot", metrics, "-o", metrics, "--force", ok=False)  # charseq's data: never
    assert result.exit_code == 2 and "holds charseq's data" in result.stderr
    os.symlink(tmp_path / "nowhere.png", tmp_path / "link.png")
    result = run_cli("plot", metrics, "-o", tmp_path / "link.png", "--force", ok=False)
    assert result.exit_code == 2 and "symlink to a place that does not exist" in result.stderr
    assert not (tmp_path / "nowhere.png").exists()


def test_plot_knows_its_own_pictures_by_their_metadata_not_by_their_words(tmp_path):
    """A file that merely holds the words "charseq plot", or a link to one, is not a picture
    plot drew; a metrics path that is a device or a pipe is refused, not read for ever."""
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n')
    (tmp_path / "diagram.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>charseq plot</text></svg>')
    (tmp_path / "notes.md").write_text("# notes\nuse charseq plot to draw\n")
    (tmp_path / "loss.png").symlink_to(tmp_path / "notes.md")
    for target in ("diagram.svg", "loss.png"):
        result = run_cli("plot", metrics, "-o", tmp_path / target, ok=False)
        assert result.exit_code == 2 and "already exists" in result.stderr, target
    assert "use charseq plot" in (tmp_path / "notes.md").read_text()
    assert "<text>charseq plot</text>" in (tmp_path / "diagram.svg").read_text()
    os.mkfifo(tmp_path / "pipe.jsonl")
    for source, words in (("/dev/zero", "is a device"), (tmp_path / "pipe.jsonl", "is a pipe")):
        result = run_cli("plot", source, "-o", tmp_path / "z.png", ok=False)
        assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.output
    result = run_cli("plot", metrics, "-o", "", ok=False)
    assert result.exit_code == 2 and "not a file name" in result.stderr
    result = run_cli("plot", metrics, "-o", "-", ok=False)
    assert result.exit_code == 2 and "would be standard output" in result.stderr and not os.path.lexists("-")


def test_plot_and_export_never_write_through_a_link_planted_while_they_work(tmp_path, monkeypatch, alphabet_checkpoint):
    """Nothing was at -o when it was checked: a link put there while the picture is drawn (or
    the graph built) is replaced, never written through."""
    pytest.importorskip("matplotlib")
    import charseq.cli.plot

    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n')
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    real = charseq.cli.plot.read_metrics

    def planting(path):
        (tmp_path / "race.png").symlink_to(victim)
        return real(path)

    monkeypatch.setattr(charseq.cli.plot, "read_metrics", planting)
    run_cli("plot", metrics, "-o", tmp_path / "race.png")
    assert victim.read_text() == "precious" and not (tmp_path / "race.png").is_symlink()
    assert (tmp_path / "race.png").read_bytes()[:4] == b"\x89PNG"
    if importlib.util.find_spec("onnx") is not None:
        import charseq.export.onnx

        build = charseq.export.onnx.build

        def building(saved):
            (tmp_path / "race.onnx").symlink_to(victim)
            return build(saved)

        monkeypatch.setattr(charseq.export.onnx, "build", building)
        run_cli("export", alphabet_checkpoint, "-o", tmp_path / "race.onnx")
        assert victim.read_text() == "precious" and not (tmp_path / "race.onnx").is_symlink()


def test_a_mark_quoted_in_a_comment_or_a_pages_text_is_not_plots_mark(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n' + "[" * 100_000 + "\n")
    result = run_cli("plot", metrics, "-o", tmp_path / "deep.png", ok=False)
    assert result.exit_code == 2 and "line 3 is not JSON" in result.stderr  # nested too deep for Python: not JSON
    metrics.write_text('{"step": 1, "loss": 2.0}\n')
    creator = "<dc:creator><cc:Agent><dc:title>charseq plot</dc:title></cc:Agent></dc:creator>"
    (tmp_path / "quoted.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'xmlns:cc="http://creativecommons.org/ns#"><!-- {creator} --><text>hello</text></svg>')
    (tmp_path / "quoted.pdf").write_bytes(
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n2 0 obj << /Length 30 >> stream\n(/Creator (charseq plot)) Tj"
        b"\nendstream endobj\n3 0 obj << /Creator (LaTeX) >> endobj\ntrailer << /Root 1 0 R /Info 3 0 R >>\n%%EOF\n")
    for name in ("quoted.svg", "quoted.pdf"):
        before = (tmp_path / name).read_bytes()
        result = run_cli("plot", metrics, "-o", tmp_path / name, ok=False)
        assert result.exit_code == 2 and "already exists" in result.stderr and (tmp_path / name).read_bytes() == before
        run_cli("plot", metrics, "-o", tmp_path / f"drawn-{name}")
        run_cli("plot", metrics, "-o", tmp_path / f"drawn-{name}")  # its own: drawn again


def test_plot_refuses_what_is_not_a_metrics_file(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    result = run_cli("plot", bogus, ok=False)
    assert result.exit_code == 2 and "is not JSON" in result.output


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n')
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = run_cli("plot", metrics, "-o", tmp_path / "x.png", ok=False)
    assert result.exit_code == 1 and install_command("plot") in result.output  # as charseq was installed


def test_resume_a_finished_run_for_more_epochs(alphabet_checkpoint, tmp_path):
    out = tmp_path / "longer.npz"
    result = run_cli("train", "--resume", alphabet_checkpoint, "--epochs", "190", "--out", out, "--sample-length", "0")
    assert "resuming from" in result.stdout and "at step 2,700 (epoch 181" in result.stdout
    assert "epoch 181/190" in result.stdout and "epoch 180/190" not in result.stdout
    assert charseq.load(out).progress["epoch"] == 190


def test_every_training_setting_is_a_train_option_with_its_help():
    """The options are made from TrainConfig's fields: a setting cannot lack one."""
    from dataclasses import fields

    from charseq import TrainConfig

    text = " ".join(run_cli("train", "--help").output.split())
    for field in fields(TrainConfig):
        flag = f"--{field.name.replace('_', '-')}"
        assert flag in text, flag
        assert " ".join(field.metadata["help"].split()) in text, flag
