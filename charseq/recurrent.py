"""Stacked recurrent models: what the bundled rnn, gru and lstm share.

Layer 0 reads one-hot ids, so its input term is a gather of rows of its input weights
(stored transposed, (V, G*H)), never a matmul. Every other non-recurrent term (a
layer's input from the layer below, the output projection, softmax, cross-entropy and
their gradients) is one matmul over all T*B rows. Only the recurrence loops over time:
each step is one (B, H) x (H, G*H) matmul for all G gates of a cell, and a few
elementwise calls on (B, G*H) blocks. Sigmoid gates are computed as
sigmoid(a) = 0.5 + 0.5 tanh(a / 2) with the 1/2 folded into the gates' inputs before
the loop, so one tanh call serves every gate of a step.

With ``layers`` > 1 and dropout p, each layer's input from the layer below and the top
layer's output are dropped with probability p (char-rnn's, and Zaremba et al.'s,
dropout on the non-recurrent connections only). Arrays keep the batch in rows and
time in the first axis; a workspace of buffers per (B, T) shape is reused from step to
step, so training allocates nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from charseq.model import Dropout, Head, Layout, Parameters, Scatter

MAX_LAYERS = 64
_WORKSPACES_KEPT = 4


class Recurrent:
    """A stack of `layers` recurrent cells of `hidden_size` units and a softmax output.

    A subclass is one cell: its gate count, parameter names, buffers, one time step
    (``_step``) and its backward pass through time (``_backward_layer``).
    """

    name = ""
    GATES = 1
    STATES = 1  # arrays of (B, H) a layer carries: 1 (h), or 2 for the LSTM's (h, c)
    HIDDEN_BIAS = False  # a second bias on the recurrent term (where the GRU's reset gate applies)

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
        self.input_weights = (self.roles[0]["ih"],)
        self.layout = Layout(self._stored_shapes())
        self.flat, self.params = self.layout.allocate(self.dtype)
        self._workspaces: dict[tuple[int, int], _Workspace] = {}
        gh = self.GATES * self.hidden_size
        self._scale = self._offset = None
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

    def _sigmoid_columns(self) -> slice | None:
        """The columns of a step's (B, G*H) gate block that are sigmoid gates."""
        return None

    def _layer_buffers(self, B: int, T: int) -> Any:
        raise NotImplementedError

    def _step(self, lw: Any, t: int, hh_t: np.ndarray, b_hh: np.ndarray | None) -> None:
        """Step t of one layer: from lw.XG[t] (the input term) and the state at t, the state
        at t + 1. hh_t is the recurrent weights transposed (and scaled), (H, G*H)."""
        raise NotImplementedError

    def _backward_layer(self, lw: Any, layer: int, dout: np.ndarray, grads: Parameters) -> np.ndarray:
        """From the gradient reaching the layer's outputs (T, B, H): the recurrent weights'
        gradients (written into grads) and the gradient of the input terms, (T, B, G*H)."""
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
                       out: Parameters | None = None, dropout: float = 0.0,
                       rng: np.random.Generator | None = None) -> tuple[float, Parameters, np.ndarray]:
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
        per_layer = T * B * (3 * G * H + 6 * H)  # inputs, gates, their gradients; states and constants
        head = T * B * (V + 2 * H) + (T * B * V if V <= 256 else 0)
        return self.dtype.itemsize * (self.layers * per_layer + head) + 8 * T * B

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
        ws = self._workspace(B, T)
        p = self.params
        for layer, lw in enumerate(ws.layers):
            names = self.roles[layer]
            XG = lw.XG  # (T, B, G*H): each step's input term
            if layer == 0:
                np.take(p[names["ih"]].T, x.T, axis=0, out=XG)  # W_ih x_t as a gather of rows
            else:
                below = ws.layers[layer - 1].H[1:].reshape(T * B, H)
                if dropout:
                    below = ws.drops[layer].apply(below, dropout, rng)
                np.dot(below, p[names["ih"]].T, out=XG.reshape(T * B, GH))
            XG += p[names["b_ih"]]
            hh_t, b_hh = self._recurrent_terms(lw, layer)
            if self._scale is not None:
                XG *= self._scale
            self._start(lw, None if state is None else state[layer])
            for t in range(T):
                self._step(lw, t, hh_t, b_hh)
        top = ws.layers[-1].H[1:].reshape(T * B, H)
        if dropout:
            top = ws.head.dropout.apply(top, dropout, rng)
        return ws.head.loss(top, p["V"], p["c"], y.T.reshape(-1))  # rows in time-major order

    def _recurrent_terms(self, lw: Any, layer: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The recurrent weights transposed, (H, G*H), and bias, with the sigmoid gates'
        columns halved (into the layer's buffers) when the cell has sigmoid gates."""
        names = self.roles[layer]
        hh_t = self.params[names["hh"]].T
        b_hh = self.params[names["b_hh"]] if "b_hh" in names else None
        if self._scale is None:
            return hh_t, b_hh
        np.multiply(hh_t, self._scale, out=lw.hh_t)
        if b_hh is not None:
            np.multiply(b_hh, self._scale, out=lw.b_hh)
            b_hh = lw.b_hh
        return lw.hh_t, b_hh

    def _start(self, lw: Any, state: np.ndarray | None) -> None:
        H = self.hidden_size
        if state is None:
            lw.H[0] = 0.0
            if self.STATES == 2:
                lw.C[0] = 0.0
        else:
            lw.H[0] = state[:, :H]
            if self.STATES == 2:
                lw.C[0] = state[:, H:]

    def _last_state(self, ws: Any) -> np.ndarray:
        states = [lw.H[-1] for lw in ws.layers] if self.STATES == 1 else \
            [np.concatenate([lw.H[-1], lw.C[-1]], axis=1) for lw in ws.layers]
        return np.stack(states)

    def _backward(self, x: np.ndarray, y: np.ndarray, grads: Parameters, dropped: bool = False) -> None:
        B, T = x.shape
        H, GH = self.hidden_size, self.GATES * self.hidden_size
        ws = self._workspace(B, T)
        p = self.params
        top = ws.head.dropout.dropped if dropped else ws.layers[-1].H[1:].reshape(T * B, H)
        dout = ws.head.backward(top, p["V"], y.T.reshape(-1), grads["V"], grads["c"])  # (T*B, H)
        if dropped:
            dout *= ws.head.dropout.mask
        for layer in range(self.layers - 1, -1, -1):
            names, lw = self.roles[layer], ws.layers[layer]
            dx = self._backward_layer(lw, layer, ws.head.dstates, grads).reshape(T * B, GH)
            np.dot(ws.head.ones, dx, out=grads[names["b_ih"]])
            dhh = dx if lw.dhh is None else lw.dhh.reshape(T * B, GH)  # the recurrent terms' gradient
            np.dot(dhh.T, lw.H[:-1].reshape(T * B, H), out=grads[names["hh"]])
            if "b_hh" in names:
                np.dot(ws.head.ones, dhh, out=grads[names["b_hh"]])
            if layer == 0:
                ws.scatter(x.T.reshape(-1), dx, out=grads[names["ih"]].T)  # (V, G*H)
                continue
            below = ws.drops[layer].dropped if dropped else ws.layers[layer - 1].H[1:].reshape(T * B, H)
            np.dot(dx.T, below, out=grads[names["ih"]])  # (G*H, H)
            np.dot(dx, p[names["ih"]], out=dout)  # what the layer below's outputs cost
            if dropped:
                dout *= ws.drops[layer].mask

    def _workspace(self, B: int, T: int) -> _Workspace:
        ws = self._workspaces.get((B, T))
        if ws is None:
            if len(self._workspaces) >= _WORKSPACES_KEPT:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = self._workspaces[(B, T)] = _Workspace(self, B, T)
        return ws


class _Workspace:
    """Buffers for one (B, T) shape: each layer's, the output head's and the scatter's."""

    def __init__(self, model: Recurrent, B: int, T: int):
        self.layers = [model._layer_buffers(B, T) for _ in range(model.layers)]
        self.head = Head(B, T, model.hidden_size, model.vocab_size, model.dtype)
        self.drops = [Dropout() for _ in range(model.layers)]  # [0] unused: layer 0 reads ids
        self.scatter = Scatter(T * B, model.vocab_size, model.dtype)


class LayerBuffers:
    """One layer's buffers for T steps of B sequences: the input terms (then gates), the
    states, and whatever else its cell keeps for the backward pass."""

    def __init__(self, model: Recurrent, B: int, T: int, **extra: tuple[int, ...]):
        H, GH, dtype = model.hidden_size, model.GATES * model.hidden_size, model.dtype
        self.XG = np.empty((T, B, GH), dtype=dtype)
        self.H = np.empty((T + 1, B, H), dtype=dtype)  # [h0, h_0 .. h_{T-1}] (the seed's a_t)
        self.dh = np.empty((B, H), dtype=dtype)  # the gradient reaching h_{t-1} from step t
        self.tmp = np.empty((B, H), dtype=dtype)
        self.dhh = None  # the recurrent terms' gradient, where it is not the input terms'
        if model._scale is not None:
            self.hh_t = np.empty((H, GH), dtype=dtype)
            self.b_hh = np.empty(GH, dtype=dtype)
        for name, shape in extra.items():
            setattr(self, name, np.empty(shape, dtype=dtype))


class Stepper:
    """Advances B sequences one character at a time, every array preallocated, over a
    snapshot of the weights: layer 0's input term and bias are one row gather."""

    def __init__(self, model: Recurrent, batch_size: int):
        self.model = model
        p, scale = model.params, model._scale
        self.layers = [model._layer_buffers(batch_size, 1) for _ in range(model.layers)]
        self._inputs: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._recurrent: list[tuple[np.ndarray, np.ndarray | None]] = []
        for layer, names in enumerate(model.roles):
            weights = p[names["ih"]].T + (p[names["b_ih"]] if layer == 0 else 0.0)  # (V or H, G*H)
            bias = None if layer == 0 else p[names["b_ih"]].copy()
            if scale is not None:
                weights, bias = weights * scale, None if bias is None else bias * scale
            self._inputs.append((np.ascontiguousarray(weights, dtype=model.dtype), bias))
            hh_t = p[names["hh"]].T * (1.0 if scale is None else scale)
            b_hh = p[names["b_hh"]] * (1.0 if scale is None else scale) if "b_hh" in names else None
            self._recurrent.append((np.ascontiguousarray(hh_t, dtype=model.dtype), b_hh))
        for lw in self.layers:
            model._start(lw, None)
        self.VT = np.ascontiguousarray(p["V"].T)  # (H, V)
        self.c = p["c"].copy()
        self.logits = np.empty((batch_size, model.vocab_size), dtype=model.dtype)  # reused: copy to keep

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Read ids (B,); return the logits for the next character (B, V)."""
        below = None
        for lw, (weights, bias), (hh_t, b_hh) in zip(self.layers, self._inputs, self._recurrent):
            xg = lw.XG[0]
            if below is None:
                np.take(weights, ids, axis=0, out=xg)
            else:
                np.dot(below, weights, out=xg)
                xg += bias
            self.model._step(lw, 0, hh_t, b_hh)
            lw.H[0] = lw.H[1]
            if self.model.STATES == 2:
                lw.C[0] = lw.C[1]
            below = lw.H[0]
        np.dot(below, self.VT, out=self.logits)
        self.logits += self.c
        return self.logits

    @property
    def state(self) -> np.ndarray:
        """The state after the characters read so far, as the training pass carries it."""
        return self.model._last_state(self)

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Read sequences x (B, T); return the logits after the last character."""
        if x.shape[1] == 0:
            raise ValueError("feed needs at least one character")
        for t in range(x.shape[1]):
            logits = self(x[:, t])
        return logits
