"""`charseq export --format onnx`: onnxruntime runs the file as charseq runs the model
(step by step and whole sequences, carrying the state), the README's greedy loop prints
what `charseq generate --sampler argmax` prints, and the command fails in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import charseq
from charseq.checkpoints.format import Checkpoint
from charseq.export.onnx import build, read_metadata
from charseq.installation import install_command
from conftest import install_fake_distribution, run_cli
from pages import INDEX, blocks

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
GREEDY = ROOT / "docs" / "onnx_greedy.py"
GUIDE = ROOT / "docs" / "plugins.md"
SYMBOLS = "\n \"\\aé€😀"  # a newline, a quote, a backslash, two-byte, three-byte and four-byte UTF-8
ATOL = 1e-5  # logits, and states up to 10 in size
STATE_RTOL = 1e-6  # an LSTM's cell state is not bounded: 60 in float32 is 60 +- 4e-6


def _session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _random_model(name: str, layers: int, dtype: str = "float32"):
    """A small model whose every weight and bias is drawn afresh: a gate or bias put in the
    wrong place changes the logits (the initialisation's zero biases would hide it). The
    recurrent weights are small enough that a state forgets: with larger ones the dynamics
    are chaotic, and float32's rounding (which differs between any two implementations)
    grows past 1e-5 within a few hundred steps."""
    model = charseq.get_model(name, len(SYMBOLS), 6, seed=layers, layers=layers, dtype=dtype)
    model.flat[:] = np.random.default_rng(layers).normal(0, 0.7, model.flat.size)
    for names in getattr(model, "roles", ()):
        model.params[names["hh"]] = model.params[names["hh"]] * 0.4  # spectral radius about 0.7
    return model


def _assert_runs_as_charseq(model, session, batch: int = 3, length: int = 300, seed: int = 0) -> None:
    """onnxruntime's logits, fed one character at a time, as one sequence, and in two pieces,
    are the stepper's, and its states are the model's."""
    x = np.random.default_rng(seed).integers(0, model.vocab_size, (batch, length))
    stepper = model.stepper(batch)
    expected = np.stack([stepper(x[:, t]).copy() for t in range(length)], axis=1)  # (B, T, V)
    final = model.loss(x, x, None)[1]  # the contract's state after a window (any model has it)
    if hasattr(stepper, "state"):  # the bundled models' stepper says its own
        np.testing.assert_allclose(stepper.state, final, rtol=STATE_RTOL, atol=ATOL)
    zeros = np.zeros(model.state_shape(batch), np.float32)

    logits, state = session.run(None, {"ids": x, "state": zeros})
    assert logits.shape == expected.shape and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(state, final, rtol=STATE_RTOL, atol=ATOL)

    state = zeros
    for t in range(length):
        step, state = session.run(None, {"ids": x[:, t : t + 1], "state": state})
        np.testing.assert_allclose(step[:, 0], expected[:, t], rtol=0, atol=ATOL)
    np.testing.assert_allclose(state, final, rtol=STATE_RTOL, atol=ATOL)

    half = length // 2
    _, middle = session.run(None, {"ids": x[:, :half], "state": zeros})
    rest, state = session.run(None, {"ids": x[:, half:], "state": middle})
    np.testing.assert_allclose(rest, expected[:, half:], rtol=0, atol=ATOL)
    np.testing.assert_allclose(state, final, rtol=STATE_RTOL, atol=ATOL)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_onnxruntime_runs_the_model_as_charseq_does(name, layers):
    model = _random_model(name, layers)
    proto = build(Checkpoint(model=model, vocab=charseq.Vocabulary(SYMBOLS)))
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count(name.upper()) == layers  # ONNX's own operator, once per layer
    _assert_runs_as_charseq(model, _session(proto))


def test_onnxruntime_runs_the_transformer_as_charseq_reads_a_context():
    """Each call is one context (nothing is carried: the empty state passes through): its
    logits at every position are the stepper's, for any length up to the context."""
    model = charseq.get_model("transformer:layers=2,heads=2,context=24", len(SYMBOLS), 8, seed=1)
    model.flat[:] = np.random.default_rng(2).normal(0, 0.5, model.flat.size)
    proto = build(Checkpoint(model=model, vocab=charseq.Vocabulary(SYMBOLS)))
    ops = {node.op_type for node in proto.graph.node}
    assert {"LayerNormalization", "Softmax", "MatMul", "Tanh"} <= ops and not ops & {"RNN", "GRU", "LSTM"}
    assert json.loads(read_metadata(proto)["state_shape"]) == ["batch", 0]
    session = _session(proto)
    x = np.random.default_rng(3).integers(0, model.vocab_size, (3, 24))
    stepper = model.stepper(3)
    expected = np.stack([stepper(x[:, t]).copy() for t in range(24)], axis=1)
    for length in (1, 7, 24):
        logits, state = session.run(None, {"ids": x[:, :length], "state": np.zeros((3, 0), np.float32)})
        assert state.shape == (3, 0)
        np.testing.assert_allclose(logits, expected[:, :length], rtol=0, atol=ATOL)
    later, _ = session.run(None, {"ids": x[:, 10:], "state": np.zeros((3, 0), np.float32)})
    np.testing.assert_allclose(later[:, -1], model.stepper(3).feed(x[:, 10:]), rtol=0, atol=ATOL)


def test_a_float64_model_exports_as_float32():
    model = _random_model("gru", 2, dtype="float64")
    proto = build(Checkpoint(model=model, vocab=charseq.Vocabulary(SYMBOLS)))
    assert {t.data_type for t in proto.graph.initializer if t.name.endswith((".W", ".R", ".B"))} \
        == {onnx.TensorProto.FLOAT}
    assert (read_metadata(proto)["dtype"], read_metadata(proto)["trained_dtype"]) == ("float32", "float64")
    _assert_runs_as_charseq(model, _session(proto), length=100)


def test_the_interface_metadata_and_checker(tmp_path):
    model = _random_model("lstm", 2)
    saved = Checkpoint(model=model, vocab=charseq.Vocabulary(SYMBOLS))
    charseq.save(tmp_path / "m.npz", saved)
    run_cli("export", tmp_path / "m.npz")
    proto = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import] == [17] and proto.ir_version == 8

    def shape(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs, outputs = proto.graph.input, proto.graph.output
    assert [(v.name, v.type.tensor_type.elem_type, shape(v)) for v in (*inputs, *outputs)] == [
        ("ids", onnx.TensorProto.INT64, ["batch", "seq"]),
        ("state", onnx.TensorProto.FLOAT, [2, "batch", 12]),
        ("logits", onnx.TensorProto.FLOAT, ["batch", "seq", len(SYMBOLS)]),
        ("state_out", onnx.TensorProto.FLOAT, [2, "batch", 12]),
    ]
    assert model.state_shape(5) == (2, 5, 12)
    meta = read_metadata(proto)
    assert json.loads(meta["vocabulary"]) == list(SYMBOLS)
    assert json.loads(meta["model_options"]) == {"layers": 2}
    assert json.loads(meta["state_shape"]) == [2, "batch", 12]
    assert np.dtype(meta["dtype"]) == np.float32 and np.dtype(meta["trained_dtype"]) == np.float32
    assert (meta["model"], meta["hidden_size"], meta["layers"], meta["version"]) == ("lstm", "6", "2",
                                                                                   charseq.__version__)
    assert "item_end" not in meta and "state_out" in meta["interface"] and "state_out" in proto.doc_string
    assert meta["checkpoint_sha256"] == charseq.load(tmp_path / "m.npz").checksum
    # and as a runtime's user reads it
    custom = ort.InferenceSession(str(tmp_path / "m.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(custom["charseq.vocabulary"]) == list(SYMBOLS)


# -- models trained for real ------------------------------------------------------------------

TEXT = (ROOT / "charseq" / "models" / "base.py").read_text(encoding="utf-8")  # any text: both sides read the same model


@pytest.fixture(scope="module", params=["gru:layers=2", "transformer:layers=2,heads=2,context=32"])
def text_model(tmp_path_factory, request) -> Path:
    out = tmp_path_factory.mktemp("text") / "code.npz"
    (out.parent / "code.txt").write_text(TEXT, encoding="utf-8")
    run_cli("train", "--corpus", f"text:{out.parent / 'code.txt'}", "--model", request.param, "--hidden-size", 64,
            "--seq-len", 32, "--batch-size", 16, "--epochs", 12, "--threads", 1, "-q", "--sample-length", 0,
            "--out", out)
    return out


def test_the_readme_greedy_loop_prints_what_generate_prints(text_model):
    """The transformer's past its context of 32 too, from a prime longer than it."""
    run_cli("export", text_model)
    for prime, length in (("def ", 200), ("class Model", 120), ('    """', 50), ("x", 1), (TEXT[:75], 40)):
        expected = run_cli("generate", text_model, "--prime", prime, "--length", length, "--sampler", "argmax").stdout
        greedy = subprocess.run([sys.executable, str(GREEDY), str(text_model.with_suffix(".onnx")), prime, str(length)],
                                capture_output=True, text=True, encoding="utf-8", check=True,
                                env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        assert greedy.stdout == expected and len(expected) == len(prime) + length + 1


ITEMS = ["zoë", "renée", "josé", "ana", "anna", "hanna", "léa", "noé", "éva", "maëlle", "chloé", "inès"] * 20


def test_a_model_of_items(tmp_path):
    (tmp_path / "names.txt").write_text("\n".join(ITEMS) + "\n", encoding="utf-8")
    run_cli("train", "--corpus", f"lines:{tmp_path / 'names.txt'}", "--model", "lstm", "--hidden-size", 24,
            "--batch-size", 16, "--epochs", 30, "--lr", 0.02, "--threads", 1, "-q", "--sample-length", 0,
            "--out", tmp_path / "names.npz")
    run_cli("export", tmp_path / "names.npz", "-o", tmp_path / "names.onnx")
    saved = charseq.load(tmp_path / "names.npz")
    session = ort.InferenceSession(str(tmp_path / "names.onnx"))
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["charseq.item_end"] == saved.item_end == "\n"
    symbols = json.loads(meta["charseq.vocabulary"])
    assert symbols == list(saved.vocab.symbols) and "ë" in symbols
    _assert_runs_as_charseq(saved.model, session, length=200)
    # an item, greedily: from a fresh state after the end symbol, until the model ends it
    shape = [1 if dim == "batch" else dim for dim in session.get_inputs()[1].shape]
    ids, state, item = np.array([[symbols.index("\n")]]), np.zeros(shape, np.float32), ""
    while len(item) < 30:
        logits, state = session.run(None, {"ids": ids, "state": state})
        ids = logits[:, -1:].argmax(axis=-1)
        if symbols[ids[0, 0]] == "\n":
            break
        item += symbols[ids[0, 0]]
    assert item in ITEMS  # it has learnt them
    assert run_cli("generate", tmp_path / "names.npz", "--sampler", "argmax", "--length", 30).stdout == item + "\n"


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def small_checkpoint(tmp_path) -> Path:
    path = tmp_path / "small.npz"
    charseq.save(path, Checkpoint(model=_random_model("rnn", 1), vocab=charseq.Vocabulary(SYMBOLS)))
    return path


def _one_line_error(result, code: int, *parts: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr
    for part in parts:
        assert part in result.stderr


def test_writes_beside_the_checkpoint_and_refuses_to_replace_a_file_unless_forced(small_checkpoint, monkeypatch):
    monkeypatch.chdir(small_checkpoint.parent)
    out = small_checkpoint.with_suffix(".onnx")
    result = run_cli("export", "small.npz")
    assert out.is_file() and result.stdout == f"wrote small.onnx ({out.stat().st_size:,} bytes, ONNX opset 17)\n"
    written = out.read_bytes()
    out.write_bytes(b"something of the user's")
    _one_line_error(run_cli("export", "small.npz", ok=False), 2, "'small.onnx' already exists", "--force")
    assert out.read_bytes() == b"something of the user's"
    run_cli("export", "small.npz", "--force", "--format", "onnx")
    assert out.read_bytes() == written
    assert not [p.name for p in small_checkpoint.parent.iterdir() if p.name.endswith(".tmp")]


def test_never_writes_over_the_checkpoint_or_other_charseq_data(small_checkpoint, tmp_path):
    before = small_checkpoint.read_bytes()
    _one_line_error(run_cli("export", small_checkpoint, "-o", small_checkpoint, "--force", ok=False), 2,
                    "is the checkpoint being exported")
    named_onnx = tmp_path / "model.onnx"  # whose default output is itself
    named_onnx.write_bytes(before)
    _one_line_error(run_cli("export", named_onnx, ok=False), 2, "is the checkpoint being exported")
    other = tmp_path / "other.npz"
    other.write_bytes(before)
    _one_line_error(run_cli("export", small_checkpoint, "-o", other, "--force", ok=False), 2, "charseq's data")
    assert small_checkpoint.read_bytes() == before == other.read_bytes() == named_onnx.read_bytes()


@pytest.mark.parametrize("force", [(), ("--force",)])
def test_a_link_to_nowhere_is_never_written_through(small_checkpoint, tmp_path, force):
    """A planted link to where nothing is yet would make charseq create a file where someone
    else chose; train refuses it, and so does export, --force or not."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere / "created.onnx", tmp_path / "out.onnx")
    os.symlink(tmp_path / "no-such-directory", tmp_path / "gone")
    for target in (tmp_path / "out.onnx", tmp_path / "gone" / "m.onnx"):
        _one_line_error(run_cli("export", small_checkpoint, "-o", target, *force, ok=False), 2,
                        "symlink to a place that does not exist")
    assert not list(elsewhere.iterdir()) and not (tmp_path / "no-such-directory").exists()


@pytest.mark.parametrize("where, message", [("missing/m.onnx", "does not exist"), (".", "is a directory"),
                                            ("dir/", "not a file name"), ("", "not a file name"),
                                            ("-", "the ONNX file is binary")])
def test_refuses_an_output_that_is_not_a_file_name(small_checkpoint, tmp_path, where, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    _one_line_error(run_cli("export", small_checkpoint, "-o", where, ok=False), 2, message)


def test_a_bad_checkpoint_is_one_line_as_generate_says_it(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for path in (tmp_path / "missing.npz", tmp_path / "notes.txt"):
        generate = run_cli("generate", path, ok=False)
        _one_line_error(run_cli("export", path, ok=False), 2, generate.stderr.strip())
    assert not list(tmp_path.glob("*.onnx"))
    _one_line_error(run_cli("export", tmp_path / "notes.txt", "--format", "tflite", ok=False), 2, "tflite")


def test_without_onnx_it_says_what_to_install(small_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    _one_line_error(run_cli("export", small_checkpoint, ok=False), 1, install_command("export"))
    assert not small_checkpoint.with_suffix(".onnx").exists()


def _guide_block(marker: str) -> str:
    return next(block for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S) if marker in block)


def test_a_plugin_model_without_onnx_graph_is_refused_and_the_guides_method_exports_it(plugin_site, tmp_path,
                                                                                      monkeypatch):
    install_fake_distribution(plugin_site, "charseq-bigram", _guide_block("class Bigram"),
                              "[charseq]\nbigram = charseq_bigram\n")
    model = charseq.get_model("bigram", len(SYMBOLS), 1)
    model.params["L"] = np.random.default_rng(0).normal(size=(len(SYMBOLS),) * 2)
    charseq.save(tmp_path / "b.npz", Checkpoint(model=model, vocab=charseq.Vocabulary(SYMBOLS)))
    _one_line_error(run_cli("export", tmp_path / "b.npz", ok=False), 1,
                    "model 'bigram' of plugin 'bigram' (package 'charseq-bigram') cannot be exported to ONNX: it has no onnx_graph")
    assert not (tmp_path / "b.onnx").exists()

    namespace: dict = {}
    exec(textwrap.dedent(_guide_block("def onnx_graph")), namespace)
    monkeypatch.setattr(sys.modules["charseq_bigram"].Bigram, "onnx_graph", namespace["onnx_graph"], raising=False)
    run_cli("export", tmp_path / "b.npz")
    session = ort.InferenceSession(str(tmp_path / "b.onnx"))
    assert session.get_inputs()[1].shape == ["batch", 0]
    _assert_runs_as_charseq(charseq.load(tmp_path / "b.npz").model, session, length=50)


def test_the_readme_shows_the_greedy_loop_the_tests_run():
    """The export guide's greedy loop is docs/onnx_greedy.py, which the tests above run."""
    if not INDEX.is_file():
        pytest.skip("needs the source checkout")
    greedy = [b for b in blocks("python") if "onnxruntime" in b]
    assert len(greedy) == 1
    script = GREEDY.read_text()
    code = script[script.index('"""', 3) + 3:].lstrip("\n")  # without its docstring
    assert greedy[0] == code
