"""Stacked recurrent models: what the bundled rnn, gru and lstm share.

Layer 0 reads one-hot ids, so its input term is a gather of rows of its input weights
(stored transposed, (V, G*H)), never a matmul. Every other non-recurrent term (a
layer's input from the layer below, the output projection, softmax, cross-entropy and
their gradients) is one matmul over all T*B characters. Only the recurrence loops over
time: each step is one (G*H, H) x (H, B) matmul for all G gates of a cell, and a few
elementwise calls. Inside a layer, states and gates are columns, (H, B) and (G*H, B) per
step, as in the seed's (H, 1) columns: each gate is then a contiguous block (elementwise
calls on a slice of every row run at half speed), and W h is the faster matmul
(140 against 86 GFLOP/s at H=128, B=32 on a 2-core Xeon). The output layer reads rows.
Sigmoid gates are computed as sigmoid(a) = 0.5 + 0.5 tanh(a / 2) with the 1/2 folded
into the gates' weights before the loop, so one tanh call serves every gate of a step.

Going back, a step's gradients are written as its forward terms were, (G*H, B) blocks, and
then copied gate-major, (G*H, T, B): rows of B contiguous values, a copy twice as fast as
a transpose, after which each weight's gradient is one matmul against rows (T*B, H) and
each bias's one gemv.

With ``layers`` > 1 and dropout p, each layer's input from the layer below and the top
layer's output are dropped with probability p (char-rnn's, and Zaremba et al.'s,
dropout on the non-recurrent connections only). Time is the first axis; a workspace of
buffers per (B, T) shape is reused from step to step, so training allocates little.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

import numpy as np

from charseq.models.base import Dropout, Head, Layout, Parameters, Scatter, Workspaces


MAX_LAYERS = 64
# From this many input terms a step (B * G * H), layer 0 gathers its input step by step into
# columns; below it, one gather of rows and one transpose make fewer numpy calls.
_GATHER_BY_STEP = 8192


class Recurrent:
    """A stack of `layers` recurrent cells of `hidden_size` units and a softmax output.

    A subclass is one cell: its gate count, parameter names, buffers, one time step
    (``_step``) and its backward pass through time (``_backward_layer``).
    """

    name = ""
    GATES = 1
    STATES = 1  # arrays of (B, H) a layer carries: 1 (h), or 2 for the LSTM's (h, c)
    HIDDEN_BIAS = False  # a second bias on the recurrent term (where the GRU's reset gate applies)
    # Leading gate blocks whose input and recurrent terms' gradients are the same (the GRU's
    # r and z, where the two terms are simply added): the backward pass copies them across.
    SHARED_GATES = 0
    # The ONNX operator whose equations the cell's are, where its gate blocks go (position i
    # holds this cell's gate ONNX_GATES[i]) and its attributes: see charseq.export.onnx.
    ONNX_OP = "RNN"
    ONNX_GATES: tuple[int, ...] = (0,)
    ONNX_ATTRIBUTES: dict[str, Any] = {}

    def __init__(self, vocab_size: int, hidden_size: int, seed: int | None = 0, dtype: Any = np.float32,
                 layers: int = 1):
        for what, value, low in (("vocab_size", vocab_size, 1), ("hidden_size", hidden_size, 1),
                                 ("layers", layers, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{what} must be a whole number of at least {low}, got {value!r}")
        if layers > MAX_LAYERS:
            raise ValueError(f"layers must be at most {MAX_LAYERS}, got {layers}")
        self.vocab_size, self.hidden_size, self.layers = int(vocab_size), int(hidden_size), int(layers)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a float type, got {self.dtype}")
        self.roles = [self._names(layer) for layer in range(self.layers)]
        self.input_weights: tuple[str, ...] = (self.roles[0]["ih"],)
        self.layout = Layout(self._stored_shapes())
        self.flat, self.params = self.layout.allocate(self.dtype)
        self._workspaces: Workspaces[_Workspace] = Workspaces()
        gh = self.GATES * self.hidden_size
        self._scale: np.ndarray | None = None
        self._offset: np.ndarray | None = None
        if self._sigmoid_columns() is not None:
            self._scale, self._offset = np.ones(gh, self.dtype), np.zeros(gh, self.dtype)
            self._scale[self._sigmoid_columns()] = 0.5
            self._offset[self._sigmoid_columns()] = 0.5
        if seed is not None:
            self._initialise(np.random.default_rng(seed))

    # -- what a cell says of itself ------------------------------------------------------

    def _names(self, layer: int) -> dict[str, str]:
        """Parameter names of one layer by role: ih (input weights), hh (recurrent weights),
        b_ih (bias), and b_hh for a cell with a bias on the recurrent term."""
        names = {"ih": f"weight_ih_l{layer}", "hh": f"weight_hh_l{layer}", "b_ih": f"bias_ih_l{layer}"}
        if self.HIDDEN_BIAS:
            names["b_hh"] = f"bias_hh_l{layer}"
        return names

    def _sigmoid_columns(self) -> slice | np.ndarray | None:
        """The columns of a step's (B, G*H) gate block that are sigmoid gates."""
        return None

    def _layer_buffers(self, B: int, T: int, first: bool) -> Any:
        """The buffers of one layer (`first`: layer 0, which reads ids) for (B, T)."""
        raise NotImplementedError

    def _step(self, lw: Any, t: int, hh: np.ndarray, b_hh: np.ndarray | None) -> None:
        """Step t of one layer: from lw.XG[t] (the input term, (G*H, B)) and the state at t,
        the state at t + 1. hh and b_hh are from _weights (scaled)."""
        raise NotImplementedError

    def _backward_layer(self, lw: Any, layer: int, dout: np.ndarray,
                        grads: MutableMapping[str, np.ndarray]) -> np.ndarray:
        """From the gradient reaching the layer's outputs (T, H, B): the gradient of the input
        terms, (T, G*H, B) (past the SHARED_GATES blocks), and of the recurrent terms where
        it differs (lw.dhh, (T, G*H, B))."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        return {"layers": self.layers}

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (self.layers, batch_size, self.STATES * self.hidden_size)

    def gradient_buffer(self) -> tuple[np.ndarray, Parameters]:
        return self.layout.allocate(self.dtype)

    def loss(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean cross-entropy per character and the state after the window, without gradients."""
        loss = self._forward(x, y, state)
        return loss, self._last_state(self._workspace(*x.shape))

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None,
                       out: MutableMapping[str, np.ndarray] | None = None, dropout: float = 0.0,
                       rng: np.random.Generator | None = None
                       ) -> tuple[float, MutableMapping[str, np.ndarray], np.ndarray]:
        """Mean cross-entropy per character (nats), its gradients, and the state after the window.

        x, y: int arrays (B, T) of input and target ids. state: state_shape(B), or None for
        zeros; the gradient stops there (truncated backpropagation through time). out: views
        from gradient_buffer() to write the gradients into (by default a new buffer).
        dropout: the probability of dropping each unit on a non-recurrent connection, with
        masks drawn from rng.
        """
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout and rng is None:
            raise ValueError("dropout needs an rng to draw its masks from")
        loss = self._forward(x, y, state, dropout, rng)
        grads = out if out is not None else self.gradient_buffer()[1]
        self._backward(x, y, grads, bool(dropout))
        return loss, grads, self._last_state(self._workspace(*x.shape))

    def stepper(self, batch_size: int) -> Stepper:
        return Stepper(self, batch_size)

    def memory_needed(self, batch_size: int, seq_len: int) -> int:
        """Bytes of one (B, T) workspace, roughly (the parameters not included)."""
        T, B, H, V, G = seq_len, batch_size, self.hidden_size, self.vocab_size, self.GATES
        per_layer = T * B * (3 * G * H + 5 * H)  # input terms, gates, their products and gradients; states
        shared = T * B * ((2 if self.HIDDEN_BIAS else 1) * G * H + 3 * H)  # the terms' gradients; rows
        head = T * B * (V + 2 * H) + (T * B * V if V <= 256 else 0)
        return self.dtype.itemsize * (self.layers * per_layer + shared + head) + 8 * T * B

    # -- layout and initial values ---------------------------------------------------------

    def _stored_shapes(self) -> dict[str, tuple[tuple[int, ...], bool]]:
        """Each parameter's stored shape and whether it is seen transposed. Layer 0's input
        weights are stored (V, G*H): the rows its gather reads."""
        V, H, GH = self.vocab_size, self.hidden_size, self.GATES * self.hidden_size
        shapes: dict[str, tuple[tuple[int, ...], bool]] = {}
        for layer, names in enumerate(self.roles):
            shapes[names["ih"]] = ((V, GH), True) if layer == 0 else ((GH, H), False)
            shapes[names["hh"]] = ((GH, H), False)
            shapes[names["b_ih"]] = ((GH,), False)
            if "b_hh" in names:
                shapes[names["b_hh"]] = ((GH,), False)
        shapes["V"], shapes["c"] = ((V, H), False), ((V,), False)
        return shapes

    def _initialise(self, rng: np.random.Generator) -> None:
        """Weights uniform in +-1/sqrt(fan-in), biases at zero. A one-hot input has a fan-in of
        one, so layer 0's input weights are uniform in +-1: at +-1/sqrt(H) (PyTorch's choice
        for dense inputs) the input barely moves the state, and on tiny-shakespeare the vanilla
        RNN's validation loss after one minute was 1.85 instead of 1.67."""
        k = 1.0 / np.sqrt(self.hidden_size)
        for layer, names in enumerate(self.roles):
            bound = 1.0 if layer == 0 else k
            self.params[names["ih"]] = rng.uniform(-bound, bound, size=self.params[names["ih"]].shape)
            self.params[names["hh"]] = rng.uniform(-k, k, size=self.params[names["hh"]].shape)
        self.params["V"] = rng.uniform(-k, k, size=self.params["V"].shape)

    # -- forward and backward ---------------------------------------------------------------

    def _forward(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None, dropout: float = 0.0,
                 rng: np.random.Generator | None = None) -> float:
        """The loss; leaves every layer's states and gates, the masks and the softmax in the
        shape's workspace."""
        B, T = x.shape
        H, GH = self.hidden_size, self.GATES * self.hidden_size
        if state is not None and np.shape(state) != self.state_shape(B):
            raise ValueError(f"state has shape {np.shape(state)}; this model carries {self.state_shape(B)}")
        if x.size and (x.min() < 0 or x.max() >= self.vocab_size):
            raise ValueError(f"ids must be in [0, {self.vocab_size}), got {x.min()}..{x.max()}")
        ws = self._workspace(B, T)
        p = self.params
        for layer, lw in enumerate(ws.layers):
            ih, b_ih, hh, b_hh = self._weights(lw, layer)
            XG = lw.XG  # (T, G*H, B): each step's input term
            if layer == 0 and B * GH < _GATHER_BY_STEP:  # W_ih x_t + b: a gather of rows, then one transpose
                ih.take(x.T, axis=0, out=ws.rows)  # (T, B, G*H)
                np.copyto(XG, ws.rows.transpose(0, 2, 1))
            elif layer == 0:  # a gather of columns, step by step: at this size faster than a transpose
                table = lw.ih_cols
                np.copyto(table, ih.T)  # (G*H, V)
                for t, ids in enumerate(x.T):
                    table.take(ids, axis=1, out=XG[t], mode="clip")  # checked above; 25 % faster
            else:
                below = ws.layers[layer - 1].H[1:]
                if dropout:
                    assert rng is not None  # loss_and_grads refuses dropout without an rng
                    below = ws.drops[layer].apply(below, dropout, rng)
                np.matmul(ih, below, out=XG)  # (G*H, H) x (T, H, B)
                XG += b_ih
            self._start(lw, None if state is None else state[layer])
            for t in range(T):
                self._step(lw, t, hh, b_hh)
        top = ws.top  # (T, B, H): the top layer's states as rows, for the output layer
        np.copyto(top, ws.layers[-1].H[1:].transpose(0, 2, 1))
        top = top.reshape(T * B, H)
        if dropout:
            assert rng is not None  # loss_and_grads refuses dropout without an rng
            top = ws.head.dropout.apply(top, dropout, rng)
        return ws.head.loss(top, p["V"], p["c"], y.T.reshape(-1))  # rows in time-major order

    def _weights(self, lw: Any, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """One layer's weights as its steps read them, copied into the layer's buffers, with
        the sigmoid gates' rows halved: layer 0's gather table (V, G*H) with its bias folded
        in, or the input weights (G*H, H); the input bias; the recurrent weights (G*H, H)
        and bias (None where the cell has none)."""
        p, names, scale = self.params, self.roles[layer], self._scale
        ih, b_ih, hh = lw.ih, lw.b_ih, lw.hh
        if layer == 0:
            np.add(p[names["ih"]].T, p[names["b_ih"]], out=ih)
        else:
            np.copyto(ih, p[names["ih"]])
        np.copyto(b_ih, p[names["b_ih"]])
        np.copyto(hh, p[names["hh"]])
        b_hh = None
        if "b_hh" in names:
            b_hh = lw.b_hh
            np.copyto(b_hh, p[names["b_hh"]])
        if scale is not None:
            ih *= scale if layer == 0 else scale[:, None]
            hh *= scale[:, None]
            b_ih *= scale
            if b_hh is not None:
                b_hh *= scale
        # Biases as whole (G*H, B) columns: adding a (G*H, 1) column broadcasts along rows
        # of only B elements, several times slower than adding an array of the same shape.
        np.copyto(lw.b_ih_cols, b_ih[:, None])
        if b_hh is not None:
            np.copyto(lw.b_hh_cols, b_hh[:, None])
            b_hh = lw.b_hh_cols
        return ih, lw.b_ih_cols, hh, b_hh

    def _start(self, lw: Any, state: np.ndarray | None) -> None:
        H = self.hidden_size
        if state is None:
            lw.H[0] = 0.0
            if self.STATES == 2:
                lw.C[0] = 0.0
        else:
            lw.H[0] = state[:, :H].T
            if self.STATES == 2:
                lw.C[0] = state[:, H:].T

    def _last_state(self, ws: Any) -> np.ndarray:
        H = self.hidden_size
        state = np.empty((self.layers, ws.layers[0].H.shape[2], self.STATES * H), dtype=self.dtype)
        for layer, lw in enumerate(ws.layers):
            state[layer, :, :H] = lw.H[-1].T
            if self.STATES == 2:
                state[layer, :, H:] = lw.C[-1].T
        return state  # (layers, B, STATES * H)

    def _backward(self, x: np.ndarray, y: np.ndarray, grads: MutableMapping[str, np.ndarray],
                  dropped: bool = False) -> None:
        B, T = x.shape
        H, GH = self.hidden_size, self.GATES * self.hidden_size
        ws = self._workspace(B, T)
        p = self.params
        # With dropout the forward pass made the masks and the dropped states.
        top = cast(np.ndarray, ws.head.dropout.dropped) if dropped else ws.top.reshape(T * B, H)
        dout = ws.dout  # (T, H, B): the gradient reaching a layer's outputs
        ws.head.backward(top, p["V"], y.T.reshape(-1), grads["V"], grads["c"], out=dout,
                         mask=ws.head.dropout.mask if dropped else None)
        # The gradients of a layer's terms come gate-major, (G*H, T, B), so that each weight's
        # gradient, a sum over every (t, b) of products of columns, is one matmul against the
        # layer's states (or inputs) as rows, (T*B, H), and each bias's one gemv.
        previous, ones = ws.previous.reshape(T * B, H), ws.head.ones
        for layer in range(self.layers - 1, -1, -1):
            names, lw = self.roles[layer], ws.layers[layer]
            # Each step's terms are contiguous, (T, G*H, B); gate-major, they are G*H blocks
            # of T contiguous (B,) rows: a copy of 256-byte blocks, twice as fast as a transpose.
            terms = self._backward_layer(lw, layer, dout, grads)
            shared = self.SHARED_GATES * H
            dx = dhh = ws.dx.reshape(GH, T * B)
            if ws.dhh is not None:  # a cell with a recurrent bias has the recurrent terms' own
                assert lw.dhh is not None  # such a cell's _backward_layer sets it
                np.copyto(ws.dhh, lw.dhh.transpose(1, 0, 2))
                ws.dx[:shared] = ws.dhh[:shared]
                dhh = ws.dhh.reshape(GH, T * B)
            np.copyto(ws.dx[shared:], terms.transpose(1, 0, 2))
            np.copyto(ws.previous, lw.H[:-1].transpose(0, 2, 1))
            np.dot(dhh, previous, out=grads[names["hh"]])  # sum of dA_t h_{t-1}^T
            if ws.dhh is not None:
                np.dot(dhh, ones, out=grads[names["b_hh"]])
            np.dot(dx, ones, out=grads[names["b_ih"]])
            if layer == 0:
                ws.scatter(x.T.reshape(-1), dx.T, out=grads[names["ih"]].T)  # (V, G*H)
                continue
            below = cast(np.ndarray, ws.drops[layer].dropped) if dropped else ws.layers[layer - 1].H[1:]
            np.copyto(ws.previous, below.transpose(0, 2, 1))
            np.dot(dx, previous, out=grads[names["ih"]])  # (G*H, H)
            columns = ws.previous.reshape(H, T * B)  # spent: it takes what the layer below's outputs cost
            np.dot(p[names["ih"]].T, dx, out=columns)
            np.copyto(dout, columns.reshape(H, T, B).transpose(1, 0, 2))
            if dropped:
                dout *= ws.drops[layer].mask

    def _workspace(self, B: int, T: int) -> _Workspace:
        return self._workspaces.get(B, T, lambda: _Workspace(self, B, T))


class _Workspace:
    """Buffers for one (B, T) shape: each layer's, the output head's and the scatter's."""

    def __init__(self, model: Recurrent, B: int, T: int):
        H, GH, dtype = model.hidden_size, model.GATES * model.hidden_size, model.dtype
        self.layers = [model._layer_buffers(B, T, layer == 0) for layer in range(model.layers)]
        self.rows = np.empty((T, B, GH), dtype=dtype)  # layer 0's input terms as rows, going forward
        self.dx = self.rows.reshape(GH, T, B)  # going back, a layer's input terms' gradient, gate-major
        self.dhh = np.empty((GH, T, B), dtype=dtype) if model.HIDDEN_BIAS else None  # its recurrent terms'
        self.top = np.empty((T, B, H), dtype=dtype)  # the top layer's states as rows
        self.dout = np.empty((T, H, B), dtype=dtype)
        self.previous = np.empty((T, B, H), dtype=dtype)  # a layer's states (or inputs) as rows
        self.head = Head(B, T, model.hidden_size, model.vocab_size, model.dtype)
        self.drops = [Dropout() for _ in range(model.layers)]  # [0] unused: layer 0 reads ids
        self.scatter = Scatter(T * B, model.vocab_size, model.dtype)


class LayerBuffers:
    """One layer's buffers for T steps of B sequences, as columns: the input terms (then
    the gates), the states, and whatever else its cell keeps for the backward pass."""

    def __init__(self, model: Recurrent, B: int, T: int, first: bool, **extra: tuple[int, ...]):
        H, GH, dtype = model.hidden_size, model.GATES * model.hidden_size, model.dtype
        self.XG = np.empty((T, GH, B), dtype=dtype)
        self.H = np.empty((T + 1, H, B), dtype=dtype)  # [h0, h_0 .. h_{T-1}] (the seed's a_t)
        self.dh = np.empty((H, B), dtype=dtype)  # the gradient reaching h_{t-1} from step t
        self.tmp = np.empty((H, B), dtype=dtype)
        self.dhh = None  # the recurrent terms' gradient, where it is not the input terms'
        # the weights as the steps read them (Recurrent._weights)
        self.ih = np.empty((model.vocab_size, GH) if first else (GH, H), dtype=dtype)
        self.ih_cols = np.empty((GH, model.vocab_size), dtype=dtype) if first else None  # layer 0's table by column
        self.b_ih = np.empty(GH, dtype=dtype)
        self.hh = np.empty((GH, H), dtype=dtype)
        self.hh_T = np.empty((H, GH), dtype=dtype)  # W_hh^T, for the backward pass
        self.b_hh = np.empty(GH, dtype=dtype) if model.HIDDEN_BIAS else None
        self.b_ih_cols = np.empty((GH, B), dtype=dtype)
        self.b_hh_cols = np.empty((GH, B), dtype=dtype) if model.HIDDEN_BIAS else None
        for name, shape in extra.items():
            setattr(self, name, np.empty(shape, dtype=dtype))


class Stepper:
    """Advances B sequences one character at a time, every array preallocated, over a
    snapshot of the weights: layer 0's input term and bias are one row gather."""

    def __init__(self, model: Recurrent, batch_size: int):
        self.model = model
        p = model.params
        self.layers = [model._layer_buffers(batch_size, 1, layer == 0) for layer in range(model.layers)]
        self._weights = [model._weights(lw, layer) for layer, lw in enumerate(self.layers)]  # a snapshot
        self._table = self.layers[0].ih_cols
        np.copyto(self._table, self._weights[0][0].T)  # (G*H, V): a column per symbol
        for lw in self.layers:
            model._start(lw, None)
            lw.H[1] = 0.0  # what `state` reads before the first character
            if model.STATES == 2:
                lw.C[1] = 0.0
        self.VT = np.ascontiguousarray(p["V"].T)  # (H, V)
        self.c = p["c"].copy()
        self.logits = np.empty((batch_size, model.vocab_size), dtype=model.dtype)  # reused: copy to keep

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Read ids (B,); return the logits for the next character (B, V)."""
        below = None
        for lw, (ih, b_ih, hh, b_hh) in zip(self.layers, self._weights):
            xg = lw.XG[0]  # (G*H, B)
            if below is None:
                np.take(self._table, ids, axis=1, out=xg)
            else:
                np.dot(ih, below, out=xg)
                xg += b_ih
            self.model._step(lw, 0, hh, b_hh)
            lw.H[0] = lw.H[1]
            if self.model.STATES == 2:
                lw.C[0] = lw.C[1]
            below = lw.H[0]
        assert below is not None  # a model has at least one layer
        np.dot(below.T, self.VT, out=self.logits)
        self.logits += self.c
        return self.logits

    @property
    def state(self) -> np.ndarray:
        """The state after the characters read so far, as the training pass carries it
        (model.state_shape(B)). Assigning one moves the sequences there: a server sets rows
        to zeros to start new sequences in a running batch."""
        return self.model._last_state(self)

    @state.setter
    def state(self, value: np.ndarray) -> None:
        B = self.logits.shape[0]
        if np.shape(value) != self.model.state_shape(B):
            raise ValueError(f"state has shape {np.shape(value)}; this stepper carries {self.model.state_shape(B)}")
        H = self.model.hidden_size
        for layer, lw in enumerate(self.layers):
            lw.H[0] = value[layer, :, :H].T
            lw.H[1] = lw.H[0]
            if self.model.STATES == 2:
                lw.C[0] = value[layer, :, H:].T
                lw.C[1] = lw.C[0]

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Read sequences x (B, T); return the logits after the last character."""
        if x.shape[1] == 0:
            raise ValueError("feed needs at least one character")
        for t in range(x.shape[1]):
            logits = self(x[:, t])
        return logits
