"""`charseq export --format onnx`: a trained model as an ONNX graph, so that any ONNX
runtime (onnxruntime in a server, a browser, a phone) runs it without charseq or Python.

Every exported model has one interface, whatever its kind:

    inputs   ids        int64    (batch, seq)       symbol ids, the vocabulary's positions
             state      float32  state_shape(batch) charseq's carried state; zeros start afresh
    outputs  logits     float32  (batch, seq, V)    the next symbol's logits after each input
             state_out  float32  like state         the state after the last input

so one step is seq=1 and a prime is one call with seq=len(prime); the vocabulary and the
rest of what a user of the file needs are in its metadata (``charseq.*`` keys).

A model that can be exported says how, with a method ``onnx_graph(graph)`` that adds its
nodes to an ``OnnxGraph`` and returns the names of its logits and state (docs/plugins.md);
the bundled models map each layer onto ONNX's own RNN, GRU or LSTM operator
(``recurrent_graph``). The graph is built with the ``onnx`` package (the export extra),
imported only here, when a graph is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from charseq.errors import CharseqError, UsageError, label, setting
from charseq.files import atomic_write
from charseq.installation import install_command
from charseq.training.outputs import check_new_file
from charseq.version import __version__
from charseq.checkpoints.format import load
from charseq.models.recurrent import Recurrent

if TYPE_CHECKING:
    import onnx

    from charseq.checkpoints.format import Checkpoint
    from charseq.models.base import Model

# Opset 17: the RNN, GRU and LSTM operators are at their version 14 there (as in every later
# opset but for bfloat16), and it is old enough that onnxruntime from 1.11 (2022), TensorRT 8.5
# and onnxruntime-web all run it; newer opsets would add nothing this graph uses. IR version 8
# is the one that goes with opset 17: onnx's newest would be refused by older runtimes.
OPSET = 17
IR_VERSION = 8
KEY = "charseq."  # the prefix of the metadata keys
INTERFACE = ("inputs: ids int64 (batch, seq), symbol ids; state float32 {state}, zeros for a fresh start. "
             "outputs: logits float32 (batch, seq, {V}), the next symbol's logits after each input; state_out "
             "float32 {state}, the state after the last input. One step is seq=1; feed state_out back as state.")


def require_onnx() -> Any:
    """The onnx module, or a one-line error that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise CharseqError(f"exporting to ONNX needs the onnx package: {install_command('export')}") from None
    return onnx


class OnnxGraph:
    """What a model's ``onnx_graph(graph)`` builds on: the graph's inputs by name (``ids``,
    ``state``), and two ways to add to it, ``constant`` and ``node``. Names are made unique
    here, so a model never has to invent them. Every float constant is stored as float32,
    the graph's one float type, whatever the model's dtype."""

    def __init__(self, onnx_module: Any):
        self.onnx = onnx_module  # for anything beyond node and constant
        self.ids = "ids"  # int64 (batch, seq)
        self.state = "state"  # float32, the model's state_shape(batch)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = {self.ids, self.state, "logits", "state_out"}

    def _fresh(self, hint: str) -> str:
        name, count = hint, 1
        while name in self._names:
            count += 1
            name = f"{hint}_{count}"
        self._names.add(name)
        return name

    def constant(self, value: Any, name: str = "const") -> str:
        """An initializer holding `value`: floats as float32, integers as int64."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind in "biu":
            array = array.astype(np.int64)
        else:
            raise TypeError(f"an ONNX constant is a number array, got {array.dtype}")
        from onnx import numpy_helper

        # np.array, not np.ascontiguousarray, which makes a scalar an array of one
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), self._fresh(name)))
        return self.initializers[-1].name

    def node(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attributes: Any) -> list[str]:
        """Add one operator of the default ONNX domain (opset ``OPSET``); its outputs' names.
        An input named "" is an optional input left out."""
        names = [self._fresh(f"{op_type.lower()}_out") for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, name=self._fresh(op_type),
                                                     **attributes))
        return names


def build(checkpoint: Checkpoint) -> onnx.ModelProto:
    """The checked ONNX model of a checkpoint: its graph, interface and metadata."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    from charseq.models.build import model_label

    model = checkpoint.model
    label = model_label(model.name)
    method = getattr(model, "onnx_graph", None)
    if not callable(method) and not isinstance(model, Recurrent):
        raise CharseqError(f"{label} cannot be exported to ONNX: it has no onnx_graph method (docs/plugins.md says "
                           "what one does)")
    state_dims = _state_dims(model, label)
    graph = OnnxGraph(onnx)
    # A bundled cell says as data which ONNX operator its equations are; a plugin's model says how itself.
    result = method(graph) if callable(method) else recurrent_graph(cast(Recurrent, model), graph)
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(n, str) for n in result)):
        raise CharseqError(f"{label}: onnx_graph returned {result!r}, not the names of its logits and state")
    for output, name in zip(result, ("logits", "state_out")):  # the interface's names, whatever the model's
        graph.nodes.append(helper.make_node("Identity", [output], [name], name=f"{name}_out"))
    V = model.vocab_size
    shown_state = "(" + ", ".join(map(str, state_dims)) + ")"
    interface = INTERFACE.format(state=shown_state, V=V)
    body = helper.make_graph(
        graph.nodes, f"charseq_{model.name}",
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info("state", TensorProto.FLOAT, state_dims)],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V]),
                 helper.make_tensor_value_info("state_out", TensorProto.FLOAT, state_dims)],
        initializer=graph.initializers, doc_string=interface)
    proto = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="charseq", producer_version=__version__,
                              doc_string=f"A charseq {model.name} model over {V} symbols: {interface}")
    helper.set_model_props(proto, metadata(checkpoint, json.dumps(list(state_dims)), interface))
    try:
        onnx.checker.check_model(proto, full_check=True)  # full: with strict shape inference
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CharseqError(f"{label}: its ONNX graph does not pass onnx.checker "
                           f"({str(exc).strip().splitlines()[0]})") from None
    return proto


def _state_dims(model: Model, label: str) -> list[int | str]:
    """The state's shape with its batch axis named: the axis that grows with the batch."""
    one, two = tuple(model.state_shape(1)), tuple(model.state_shape(2))
    grows = [a != b for a, b in zip(one, two)]
    if len(one) != len(two) or sum(grows) != 1:
        raise CharseqError(f"{label} cannot be exported to ONNX: its state_shape {one} (one sequence) and {two} (two) "
                           "do not differ in one batch axis")
    return ["batch" if g else int(d) for g, d in zip(grows, one)]


def metadata(checkpoint: Checkpoint, state: str, interface: str) -> dict[str, str]:
    """What a user of the file needs besides the graph, under ``charseq.`` keys: the
    vocabulary (a JSON list: symbol i is id i), the model, the end of an item."""
    model = checkpoint.model
    options = model.options()
    props = {
        "vocabulary": json.dumps(list(checkpoint.vocab.symbols), ensure_ascii=False),
        "model": model.name,
        "model_options": json.dumps(options),
        "hidden_size": str(model.hidden_size),
        "state_shape": state,  # a JSON list, "batch" where the batch size goes
        "dtype": "float32",  # the file's, whatever the model trained in:
        "trained_dtype": str(model.dtype),
        "version": __version__,
        "interface": interface,
    }
    if isinstance(options.get("layers"), int):
        props["layers"] = str(options["layers"])
    if checkpoint.item_end is not None:  # a model of items: each starts after this symbol, and ends at it
        props["item_end"] = checkpoint.item_end
    if checkpoint.checksum is not None:
        props["checkpoint_sha256"] = checkpoint.checksum
    return {KEY + key: value for key, value in props.items()}


def read_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    """The ``charseq.`` metadata of an exported model, by key without the prefix."""
    return {p.key[len(KEY):]: p.value for p in proto.metadata_props if p.key.startswith(KEY)}


# -- the bundled models ---------------------------------------------------------------------


def recurrent_graph(model: Recurrent, graph: OnnxGraph) -> tuple[str, str]:
    """A stack of ONNX RNN, GRU or LSTM operators, one per layer, and the softmax head's
    logits. Layer 0 reads the one-hot of the ids, so its W is exactly the input weights;
    each cell class says which operator and gate order its equations are (ONNX_OP,
    ONNX_GATES, ONNX_ATTRIBUTES). A layer's state is a slice of `state`: [h] or [h, c]."""
    H, V, S = model.hidden_size, model.vocab_size, model.STATES
    p = model.params
    [ids] = graph.node("Transpose", [graph.ids], perm=[1, 0])  # (seq, batch): the operators' layout 0
    [x] = graph.node("OneHot", [ids, graph.constant(V, "vocab_size"), graph.constant([0.0, 1.0], "one_hot_values")],
                     axis=-1)  # (seq, batch, V)
    axes, one = graph.constant([0, 2], "layer_and_unit_axes"), graph.constant([1], "axis1")
    finals = []
    for layer, names in enumerate(model.roles):
        gates = model.ONNX_GATES
        W = graph.constant(_reorder(p[names["ih"]], gates)[None], f"{names['ih']}.W")
        R = graph.constant(_reorder(p[names["hh"]], gates)[None], f"{names['hh']}.R")
        Wb = _reorder(p[names["b_ih"]], gates)
        Rb = _reorder(p[names["b_hh"]], gates) if "b_hh" in names else np.zeros_like(Wb)
        B = graph.constant(np.concatenate([Wb, Rb])[None], f"{names['b_ih']}.B")
        initial = [graph.node("Slice", [graph.state, graph.constant([layer, begin], f"layer{layer}_from"),
                                        graph.constant([layer + 1, begin + H], f"layer{layer}_to"), axes])[0]
                   for begin in range(0, S * H, H)]  # h (1, batch, H), and the LSTM's c
        outputs = graph.node(model.ONNX_OP, [x, W, R, B, "", *initial], outputs=1 + S, hidden_size=H,
                             **model.ONNX_ATTRIBUTES)
        if S == 1:
            finals.append(outputs[1])  # Y_h (1, batch, H)
        else:
            finals.extend(graph.node("Concat", outputs[1:], axis=2))  # [Y_h, Y_c] (1, batch, 2H)
        [x] = graph.node("Squeeze", [outputs[0], one])  # Y (seq, 1, batch, H) -> (seq, batch, H)
    [top] = graph.node("Transpose", [x], perm=[1, 0, 2])  # (batch, seq, H)
    [logits] = graph.node("MatMul", [top, graph.constant(p["V"].T, "V.T")])
    [logits] = graph.node("Add", [logits, graph.constant(p["c"], "c")])
    [state] = graph.node("Concat", finals, axis=0)  # (layers, batch, STATES * H)
    return logits, state


def _reorder(array: np.ndarray, gates: Sequence[int]) -> np.ndarray:
    """A (G*H, ...) weight or bias with its G gate blocks in the order `gates` lists them."""
    blocks = np.asarray(array).reshape(len(gates), -1, *np.shape(array)[1:])
    return blocks[list(gates)].reshape(np.shape(array))


# -- the command ---------------------------------------------------------------------------


def default_path(checkpoint_path: Path) -> Path:
    """CHECKPOINT's name with .onnx for its suffix, beside it."""
    return checkpoint_path.with_suffix(".onnx")


def export_checkpoint(checkpoint_path: str | os.PathLike, out: str | os.PathLike | None = None,
                      force: bool = False) -> tuple[Path, int]:
    """Write a checkpoint's model as ONNX to `out` (by default beside it, as .onnx), whole or
    not at all; refuse to replace a file unless `force`, and never the checkpoint itself or
    other charseq data. The path written and its size in bytes."""
    require_onnx()  # before anything else: without it nothing can be done
    checkpoint_path = Path(checkpoint_path)
    saved = load(checkpoint_path)
    target = os.fspath(out) if out is not None else str(default_path(checkpoint_path))
    if target == "-":
        raise UsageError(f"{setting('out', '-')} would be standard output; the ONNX file is binary: give a file name "
                         f"with {label('out')}")
    check_new_file(target, label("out"), force=force, inputs={checkpoint_path: "the checkpoint being exported"})
    existed = os.path.lexists(target)  # only what was checked is written through; a link planted since is replaced
    blob = build(saved).SerializeToString()
    atomic_write(Path(target), lambda f: f.write(blob), follow_links=existed)
    return Path(target), len(blob)
