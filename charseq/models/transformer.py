"""A decoder-only transformer: nanoGPT's GPT (and makemore's), a character at a time.

    x = E[ids_t] + P_t                                   token and learned position embeddings
    for each of L blocks:
        a = LN_1(x);  q k v = a W_qkv^T + b_qkv          N heads of E/N units each
        A = softmax(q k^T / sqrt(E/N) + M)               M: 0 at and before t, -inf after
        x = x + concat_heads(A v) W_o^T + b_o
        m = LN_2(x)
        x = x + GELU(m W_fc^T + b_fc) W_p^T + b_p        an MLP of 4E units
    o = LN_f(x) V^T + c,   p = softmax(o)

LN(x) = w (x - mean(x)) / sqrt(var(x) + 1e-5) + b over the E units of a position. GELU is
the tanh form, 0.5 f (1 + tanh(sqrt(2/pi) (f + 0.044715 f^3))), GPT-2's own: NumPy has no
erf, and the tanh form is one vectorised call (PyTorch's GELU(approximate="tanh")). With
dropout p, the embeddings, the attention weights A and each block's two residual branches
are dropped, as in nanoGPT. Names follow nanoGPT's (h{l}.attn.c_attn.weight, ...), with
the weights in nn.Linear's (out, in) layout, so its weights copy across by name; the
output layer is V and c, as in every bundled model.

Rows are positions: a window of B sequences of T characters is (B*T, E), each product one
matmul over every position, attention one batched matmul over (B, N) stacked (T, T) blocks.

A transformer carries nothing from one training window to the next: a window is a
context of its own, of at most ``context`` characters (``max_window``), and the state is
empty, (B, 0). Generation keeps a key/value cache per sequence (see ``Stepper``).
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any, cast

import numpy as np

from charseq.models.base import Dropout, Head, Layout, Parameters, Scatter, Workspaces
from charseq.models.transformer_ops import (EPS, GELU_A, GELU_C, gelu, gelu_backward, layer_norm, layer_norm_backward,
                                            row_sums, softmax)

MAX_LAYERS = 64


class Transformer:
    """L pre-LayerNorm blocks of causal self-attention (`heads` heads) and an MLP, width E
    (charseq's hidden_size), over at most `context` characters."""

    name = "transformer"

    def __init__(self, vocab_size: int, hidden_size: int, seed: int | None = 0, dtype: Any = np.float32,
                 layers: int = 4, heads: int = 4, context: int = 64):
        for what, value, low in (("vocab_size", vocab_size, 1), ("hidden_size", hidden_size, 1),
                                 ("layers", layers, 1), ("heads", heads, 1), ("context", context, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{what} must be a whole number of at least {low}, got {value!r}")
        if layers > MAX_LAYERS:
            raise ValueError(f"layers must be at most {MAX_LAYERS}, got {layers}")
        if hidden_size % heads:
            raise ValueError(f"heads must divide the width (hidden size {hidden_size}), got {heads}")
        self.vocab_size, self.hidden_size = int(vocab_size), int(hidden_size)
        self.layers, self.heads, self.context = int(layers), int(heads), int(context)
        self.max_window = self.context
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a float type, got {self.dtype}")
        self.input_weights: tuple[str, ...] = ("wte",)
        self.layout = Layout({name: (shape, False) for name, shape in self._shapes().items()})
        self.flat, self.params = self.layout.allocate(self.dtype)
        self._workspaces: Workspaces[_Workspace] = Workspaces()
        if seed is not None:
            self._initialise(np.random.default_rng(seed))

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        V, E, C = self.vocab_size, self.hidden_size, self.context
        shapes: dict[str, tuple[int, ...]] = {"wte": (V, E), "wpe": (C, E)}
        for layer in range(self.layers):
            h = f"h{layer}."
            shapes.update({h + "ln_1.weight": (E,), h + "ln_1.bias": (E,),
                           h + "attn.c_attn.weight": (3 * E, E), h + "attn.c_attn.bias": (3 * E,),
                           h + "attn.c_proj.weight": (E, E), h + "attn.c_proj.bias": (E,),
                           h + "ln_2.weight": (E,), h + "ln_2.bias": (E,),
                           h + "mlp.c_fc.weight": (4 * E, E), h + "mlp.c_fc.bias": (4 * E,),
                           h + "mlp.c_proj.weight": (E, 4 * E), h + "mlp.c_proj.bias": (E,)})
        shapes.update({"ln_f.weight": (E,), "ln_f.bias": (E,), "V": (V, E), "c": (V,)})
        return shapes

    def _initialise(self, rng: np.random.Generator) -> None:
        """nanoGPT's: weights normal with standard deviation 0.02 (the residual branches'
        output weights 0.02 / sqrt(2L), so the residual stream's variance does not grow with
        depth), biases 0, LayerNorms the identity."""
        for name, view in self.params.items():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                view[...] = 1.0
            elif view.ndim == 2:
                std = 0.02 / math.sqrt(2 * self.layers) if name.endswith("c_proj.weight") else 0.02
                view[...] = rng.normal(0.0, std, size=view.shape)

    # -- the contract ---------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        return {"layers": self.layers, "heads": self.heads, "context": self.context}

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, 0)  # nothing is carried between windows: each is a context of its own

    def gradient_buffer(self) -> tuple[np.ndarray, Parameters]:
        return self.layout.allocate(self.dtype)

    def loss(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean cross-entropy per character of a window, read as a context of its own."""
        return self._forward(x, y, state), np.zeros(self.state_shape(len(x)), self.dtype)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None,
                       out: MutableMapping[str, np.ndarray] | None = None, dropout: float = 0.0,
                       rng: np.random.Generator | None = None
                       ) -> tuple[float, MutableMapping[str, np.ndarray], np.ndarray]:
        """As `loss`, with the gradients written into `out` (views from gradient_buffer())."""
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout and rng is None:
            raise ValueError("dropout needs an rng to draw its masks from")
        loss = self._forward(x, y, state, dropout, rng)
        grads = out if out is not None else self.gradient_buffer()[1]
        self._backward(x, y, grads)
        return loss, grads, np.zeros(self.state_shape(len(x)), self.dtype)

    def stepper(self, batch_size: int) -> Stepper:
        return Stepper(self, batch_size)

    def memory_needed(self, batch_size: int, seq_len: int) -> int:
        """Bytes of one (B, T) workspace, roughly (the parameters not included)."""
        N, E, V = batch_size * seq_len, self.hidden_size, self.vocab_size
        blocks = batch_size * self.heads * seq_len * seq_len  # a (T, T) block per sequence and head
        # with dropout, each dropped array has a mask, its dropped copy and a boolean a quarter its size
        per_layer = N * 29 * E + 3 * blocks + (2 * N * E + blocks) * 9 // 4
        return self.dtype.itemsize * (self.layers * per_layer + N * (9 * E + 3 * V) + N * E * 9 // 4)

    # -- forward and backward ---------------------------------------------------------------

    def _check(self, x: np.ndarray, state: np.ndarray | None) -> None:
        B, T = x.shape
        if T > self.context:
            raise ValueError(f"a window of {T} characters is longer than the transformer's context of {self.context}")
        if state is not None and np.shape(state) != self.state_shape(B):
            raise ValueError(f"state has shape {np.shape(state)}; this model carries {self.state_shape(B)}")
        if x.size and (x.min() < 0 or x.max() >= self.vocab_size):
            raise ValueError(f"ids must be in [0, {self.vocab_size}), got {x.min()}..{x.max()}")

    def _forward(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None, dropout: float = 0.0,
                 rng: np.random.Generator | None = None) -> float:
        """The loss; leaves what the backward pass reads in the shape's workspace."""
        self._check(x, state)
        B, T = x.shape
        p, ws = self.params, self._workspace(B, T)
        ws.dropout = dropout
        h = ws.x[0]
        np.take(p["wte"], x.reshape(-1), axis=0, out=h)
        h.reshape(B, T, -1)[...] += p["wpe"][:T]
        if dropout:
            assert rng is not None  # loss_and_grads refuses dropout without an rng
            h[...] = ws.drops[0].apply(h, dropout, rng)
        for layer, lw in enumerate(ws.blocks):
            w = _BlockWeights(p, layer)
            x_in, x_out = ws.x[layer], ws.x[layer + 1]
            layer_norm(x_in, w.ln_1_w, w.ln_1_b, ws.average, lw.xhat1, lw.rstd1, lw.a)
            np.dot(lw.a, w.attn_w.T, out=lw.qkv)
            lw.qkv += w.attn_b
            attention = self._attend(lw, B, T, dropout, rng)
            np.dot(attention, w.proj_w.T, out=x_out)
            x_out += w.proj_b
            if dropout:
                x_out[...] = lw.drop_attn.apply(x_out, dropout, rng)  # type: ignore[arg-type]
            x_out += x_in  # x + attention
            layer_norm(x_out, w.ln_2_w, w.ln_2_b, ws.average, lw.xhat2, lw.rstd2, lw.m)
            np.dot(lw.m, w.fc_w.T, out=lw.f)
            lw.f += w.fc_b
            gelu(lw.f, lw.tanh, lw.g)
            np.dot(lw.g, w.mp_w.T, out=lw.mlp)
            lw.mlp += w.mp_b
            mlp = lw.drop_mlp.apply(lw.mlp, dropout, rng) if dropout else lw.mlp  # type: ignore[arg-type]
            x_out += mlp  # + MLP
        layer_norm(ws.x[-1], p["ln_f.weight"], p["ln_f.bias"], ws.average, ws.xhat_f, ws.rstd_f, ws.top)
        return ws.head.loss(ws.top, p["V"], p["c"], y.reshape(-1))

    def _attend(self, lw: Any, B: int, T: int, dropout: float, rng: np.random.Generator | None) -> np.ndarray:
        """Causal self-attention of every head from the block's q k v rows: the heads'
        outputs concatenated, as rows (B*T, E)."""
        N, D = self.heads, self.hidden_size // self.heads
        np.copyto(lw.qkvh, lw.qkv.reshape(B, T, 3, N, D).transpose(2, 0, 3, 1, 4))  # (3, B, N, T, D)
        q, k, v = lw.qkvh
        q *= 1.0 / math.sqrt(D)  # the scale, on q: fewer numbers than the scores
        A = lw.A  # (B, N, T, T)
        ws = self._workspace(B, T)

        def scores() -> None:
            np.matmul(q, k.transpose(0, 1, 3, 2), out=A)
            np.add(A, ws.mask, out=A)

        softmax(A, scores, ws.time_ones, ws.row_sums)
        weights = lw.drop_A.apply(A, dropout, rng) if dropout else A
        np.matmul(weights, v, out=lw.heads_out)  # (B, N, T, D)
        np.copyto(lw.y.reshape(B, T, N, D), lw.heads_out.transpose(0, 2, 1, 3))
        return lw.y

    def _backward(self, x: np.ndarray, y: np.ndarray, grads: MutableMapping[str, np.ndarray]) -> None:
        B, T = x.shape
        E, N, D = self.hidden_size, self.heads, self.hidden_size // self.heads
        p, ws = self.params, self._workspace(B, T)
        dropout = ws.dropout
        # The output layer: (p - onehot(y)) / (B*T) reaches the logits.
        dlogits = ws.head.probs
        dlogits[ws.head.rows, y.reshape(-1)] -= 1.0
        dlogits *= 1.0 / len(dlogits)
        np.dot(dlogits.T, ws.top, out=grads["V"])
        np.dot(ws.head.ones, dlogits, out=grads["c"])
        dtop = ws.d_rows
        np.dot(dlogits, p["V"], out=dtop)
        dx = ws.dx  # the gradient reaching the residual stream
        layer_norm_backward(dtop, ws.xhat_f, ws.rstd_f, p["ln_f.weight"], grads["ln_f.weight"],
                             grads["ln_f.bias"], dx, ws.head.ones, ws.average, ws.rows)
        for layer in range(self.layers - 1, -1, -1):
            w, g, lw = _BlockWeights(p, layer), _BlockWeights(grads, layer), ws.blocks[layer]
            # MLP branch: x_out = x_mid + drop(GELU(m W_fc^T + b_fc) W_p^T + b_p)
            dmlp = _through_dropout(dx, lw.drop_mlp if dropout else None, lw.dm_rows)
            df = lw.g  # spent: takes the gradient of GELU's input
            _linear_backward(dmlp, lw.g, w.mp_w, g.mp_w, g.mp_b, ws.head.ones, df)
            gelu_backward(lw.f, lw.tanh, df, ws.wide)
            dm = lw.m  # spent
            _linear_backward(df, lw.m, w.fc_w, g.fc_w, g.fc_b, ws.head.ones, dm)
            layer_norm_backward(dm, lw.xhat2, lw.rstd2, w.ln_2_w, g.ln_2_w, g.ln_2_b, dmlp, ws.head.ones,
                                 ws.average, ws.rows)
            dx += dmlp  # the residual and the branch meet in x_mid
            # Attention branch: x_mid = x_in + drop(concat(A v) W_o^T + b_o)
            datt = _through_dropout(dx, lw.drop_attn if dropout else None, lw.dm_rows)
            dy = lw.y  # spent
            _linear_backward(datt, lw.y, w.proj_w, g.proj_w, g.proj_b, ws.head.ones, dy)
            dheads = lw.heads_out  # (B, N, T, D), spent
            np.copyto(dheads, dy.reshape(B, T, N, D).transpose(0, 2, 1, 3))
            q, k, v = lw.qkvh
            dqkvh = lw.dqkvh
            dq, dk, dv = dqkvh
            A = lw.A
            weights = cast(np.ndarray, lw.drop_A.dropped) if dropout else A
            np.matmul(weights.transpose(0, 1, 3, 2), dheads, out=dv)
            dA = lw.dA
            np.matmul(dheads, v.transpose(0, 1, 3, 2), out=dA)
            if dropout:
                dA *= lw.drop_A.mask
            # softmax: dS = A * (dA - sum(dA * A)) over each row; then the 1/sqrt(D) scale
            np.multiply(dA, A, out=lw.dA_A)
            dA -= row_sums(lw.dA_A, ws.time_ones, ws.row_sums)
            dA *= A
            np.matmul(dA, k, out=dq)
            dq *= 1.0 / math.sqrt(D)  # q was scaled, so dk needs nothing more
            np.matmul(dA.transpose(0, 1, 3, 2), q, out=dk)
            dqkv = lw.qkv  # spent: (B*T, 3E)
            np.copyto(dqkv.reshape(B, T, 3, N, D), dqkvh.transpose(1, 3, 0, 2, 4))
            da = lw.a  # spent
            _linear_backward(dqkv, lw.a, w.attn_w, g.attn_w, g.attn_b, ws.head.ones, da)
            layer_norm_backward(da, lw.xhat1, lw.rstd1, w.ln_1_w, g.ln_1_w, g.ln_1_b, datt, ws.head.ones,
                                 ws.average, ws.rows)
            dx += datt
        if dropout:
            dx *= ws.drops[0].mask
        ws.scatter(x.reshape(-1), dx, out=grads["wte"])
        dwpe = grads["wpe"]
        dwpe[T:] = 0.0
        np.sum(dx.reshape(B, T, E), axis=0, out=dwpe[:T])

    def _workspace(self, B: int, T: int) -> _Workspace:
        return self._workspaces.get(B, T, lambda: _Workspace(self, B, T))

    # -- export ---------------------------------------------------------------------------

    def onnx_graph(self, graph: Any) -> tuple[str, str]:
        """The forward pass in ONNX (opset 17): LayerNormalization, MatMul, Softmax and a
        causal mask sliced to the input's length. Nothing is carried: each call reads its ids
        (at most `context` of them) as one context, and the empty state passes through."""
        E, N, D, p = self.hidden_size, self.heads, self.hidden_size // self.heads, self.params
        const = graph.constant
        zero, one, two = const([0], "axis0"), const([1], "axis1"), const([2], "axis2")
        [seq] = graph.node("Slice", [graph.node("Shape", [graph.ids])[0], one, two])  # (1,): the length T
        [x] = graph.node("Gather", [const(p["wte"], "wte"), graph.ids], axis=0)  # (batch, T, E)
        [positions] = graph.node("Slice", [const(p["wpe"], "wpe"), zero, seq, zero])  # (T, E)
        [x] = graph.node("Add", [x, positions])
        blocked = np.triu(np.full((self.context, self.context), np.finfo(np.float32).min, np.float32), k=1)
        [mask] = graph.node("Slice", [const(blocked, "causal_mask"), const([0, 0], "from"),
                                      graph.node("Concat", [seq, seq], axis=0)[0], const([0, 1], "axes01")])

        def linear(x: str, name: str) -> str:
            [y] = graph.node("MatMul", [x, const(p[name + ".weight"].T, name + ".weight.T")])
            return graph.node("Add", [y, const(p[name + ".bias"], name + ".bias")])[0]

        def layer_norm(x: str, name: str) -> str:
            return graph.node("LayerNormalization", [x, const(p[name + ".weight"], name + ".weight"),
                                                     const(p[name + ".bias"], name + ".bias")],
                              axis=-1, epsilon=EPS)[0]

        for layer in range(self.layers):
            h = f"h{layer}."
            [qkv] = graph.node("Reshape", [linear(layer_norm(x, h + "ln_1"), h + "attn.c_attn"),
                                           const([0, 0, 3, N, D], "qkv_shape")])
            [qkv] = graph.node("Transpose", [qkv], perm=[2, 0, 3, 1, 4])  # (3, batch, N, T, D)
            q, k, v = (graph.node("Gather", [qkv, const(i, f"part{i}")], axis=0)[0] for i in range(3))
            [keys] = graph.node("Transpose", [k], perm=[0, 1, 3, 2])
            [scores] = graph.node("MatMul", [q, keys])
            [scores] = graph.node("Mul", [scores, const(np.float32(1.0 / math.sqrt(D)), "scale")])
            [scores] = graph.node("Add", [scores, mask])
            [weights] = graph.node("Softmax", [scores], axis=-1)
            [heads] = graph.node("MatMul", [weights, v])  # (batch, N, T, D)
            [heads] = graph.node("Transpose", [heads], perm=[0, 2, 1, 3])
            [heads] = graph.node("Reshape", [heads, const([0, 0, E], "rows_shape")])
            [x] = graph.node("Add", [x, linear(heads, h + "attn.c_proj")])
            f = linear(layer_norm(x, h + "ln_2"), h + "mlp.c_fc")
            [cube] = graph.node("Mul", [f, graph.node("Mul", [f, f])[0]])
            [inner] = graph.node("Add", [f, graph.node("Mul", [cube, const(np.float32(GELU_A), "gelu_a")])[0]])
            [t] = graph.node("Tanh", [graph.node("Mul", [inner, const(np.float32(GELU_C), "gelu_c")])[0]])
            [g] = graph.node("Mul", [graph.node("Mul", [f, const(np.float32(0.5), "half")])[0],
                                     graph.node("Add", [t, const(np.float32(1.0), "one")])[0]])
            [x] = graph.node("Add", [x, linear(g, h + "mlp.c_proj")])
        [logits] = graph.node("MatMul", [layer_norm(x, "ln_f"), const(p["V"].T, "V.T")])
        [logits] = graph.node("Add", [logits, const(p["c"], "c")])
        return logits, graph.node("Identity", [graph.state])[0]

    # -- inference, for the stepper ---------------------------------------------------------

    def infer(self, ids: np.ndarray, positions: np.ndarray, cache: np.ndarray) -> np.ndarray:
        """The logits after each of `ids` (B, n), the characters at `positions` (B,) onwards of
        each sequence, whose earlier characters' keys and values are in `cache`
        (B, L, 2, N, C, D); theirs are written there. Every product is over the B*n rows."""
        B, n = ids.shape
        E, N, D, C = self.hidden_size, self.heads, self.hidden_size // self.heads, self.context
        p = self.params
        at = positions[:, None] + np.arange(n)  # (B, n)
        h = p["wte"][ids.reshape(-1)] + p["wpe"][at.reshape(-1)]  # (B*n, E)
        rows = np.arange(B)[:, None]
        visible = np.arange(C)[None, None, :] <= at[:, :, None]  # (B, n, C): key j seen from position t
        bias = np.where(visible, 0.0, -np.inf).astype(self.dtype)[:, None]  # (B, 1, n, C)
        average, ones = np.full(E, 1.0 / E, self.dtype), np.ones(C, self.dtype)
        for layer in range(self.layers):
            w = _BlockWeights(p, layer)
            a = layer_norm(h, w.ln_1_w, w.ln_1_b, average)
            qkv = (a @ w.attn_w.T + w.attn_b).reshape(B, n, 3, N, D)
            keys, values = cache[:, layer, 0], cache[:, layer, 1]  # (B, N, C, D)
            keys[rows, :, at] = qkv[:, :, 1]
            values[rows, :, at] = qkv[:, :, 2]
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (B, N, n, D)
            A = np.empty((B, N, n, C), self.dtype)

            def scores() -> None:
                np.matmul(q, keys.transpose(0, 1, 3, 2), out=A)
                np.multiply(A, 1.0 / math.sqrt(D), out=A)
                np.add(A, bias, out=A)

            softmax(A, scores, ones)
            heads = (A @ values).transpose(0, 2, 1, 3).reshape(B * n, E)
            h = h + heads @ w.proj_w.T + w.proj_b
            f = layer_norm(h, w.ln_2_w, w.ln_2_b, average) @ w.fc_w.T + w.fc_b
            h += gelu(f) @ w.mp_w.T + w.mp_b
        top = layer_norm(h, p["ln_f.weight"], p["ln_f.bias"], average)
        return (top @ p["V"].T + p["c"]).reshape(B, n, -1)


def _through_dropout(d: np.ndarray, drop: Dropout | None, out: np.ndarray) -> np.ndarray:
    """The gradient `d` reaching a dropped branch's output, taken back through its mask (a copy
    where nothing was dropped), into `out`."""
    if drop is None:
        np.copyto(out, d)
    else:
        np.multiply(d, cast(np.ndarray, drop.mask), out=out)
    return out


def _linear_backward(dy: np.ndarray, x: np.ndarray, W: np.ndarray, dW: np.ndarray, db: np.ndarray,
                     ones: np.ndarray, dx: np.ndarray) -> None:
    """For y = x W^T + b over rows: dW = dy^T x, db = the column sums of dy, and dx = dy W.
    `dx` may be `x`'s own buffer: x is read first."""
    np.dot(dy.T, x, out=dW)
    np.dot(ones, dy, out=db)
    np.dot(dy, W, out=dx)


class _BlockWeights:
    """One block's arrays of a parameter mapping (the weights, or their gradients) by role."""

    def __init__(self, arrays: MutableMapping[str, np.ndarray], layer: int):
        h = f"h{layer}."
        self.ln_1_w, self.ln_1_b = arrays[h + "ln_1.weight"], arrays[h + "ln_1.bias"]
        self.attn_w, self.attn_b = arrays[h + "attn.c_attn.weight"], arrays[h + "attn.c_attn.bias"]
        self.proj_w, self.proj_b = arrays[h + "attn.c_proj.weight"], arrays[h + "attn.c_proj.bias"]
        self.ln_2_w, self.ln_2_b = arrays[h + "ln_2.weight"], arrays[h + "ln_2.bias"]
        self.fc_w, self.fc_b = arrays[h + "mlp.c_fc.weight"], arrays[h + "mlp.c_fc.bias"]
        self.mp_w, self.mp_b = arrays[h + "mlp.c_proj.weight"], arrays[h + "mlp.c_proj.bias"]


class _Block:
    """One block's buffers for a (B, T) shape: what the backward pass reads, and scratch."""

    def __init__(self, B: int, T: int, E: int, heads: int, dtype: np.dtype):
        rows, D = B * T, E // heads
        self.xhat1, self.xhat2 = np.empty((rows, E), dtype), np.empty((rows, E), dtype)
        self.rstd1, self.rstd2 = np.empty((rows, 1), dtype), np.empty((rows, 1), dtype)
        self.a, self.m, self.y = np.empty((rows, E), dtype), np.empty((rows, E), dtype), np.empty((rows, E), dtype)
        self.qkv = np.empty((rows, 3 * E), dtype)
        self.qkvh, self.dqkvh = np.empty((3, B, heads, T, D), dtype), np.empty((3, B, heads, T, D), dtype)
        self.A, self.dA, self.dA_A = (np.empty((B, heads, T, T), dtype) for _ in range(3))
        self.heads_out = np.empty((B, heads, T, D), dtype)
        self.f, self.tanh, self.g = (np.empty((rows, 4 * E), dtype) for _ in range(3))
        self.mlp, self.dm_rows = np.empty((rows, E), dtype), np.empty((rows, E), dtype)
        self.drop_A, self.drop_attn, self.drop_mlp = Dropout(), Dropout(), Dropout()


class _Workspace:
    """Every buffer of one (B, T) shape, reused from step to step."""

    def __init__(self, model: Transformer, B: int, T: int):
        E, V, dtype = model.hidden_size, model.vocab_size, model.dtype
        rows = B * T
        self.x = np.empty((model.layers + 1, rows, E), dtype)  # the residual stream into each block, and out
        self.blocks = [_Block(B, T, E, model.heads, dtype) for _ in range(model.layers)]
        self.xhat_f, self.rstd_f = np.empty((rows, E), dtype), np.empty((rows, 1), dtype)
        self.top, self.d_rows, self.dx = (np.empty((rows, E), dtype) for _ in range(3))
        self.head = Head(B, T, E, V, dtype)
        self.drops = [Dropout()]
        self.scatter = Scatter(rows, V, dtype)
        self.dropout = 0.0
        # Scratch shared by the blocks: sums along a short last axis are gemvs against these
        # (several times faster than np.sum's reduction there).
        self.mask = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)  # position t attends up to t
        self.average = np.full(E, 1.0 / E, dtype)
        self.time_ones = np.ones(T, dtype)
        self.row_sums = np.empty(B * model.heads * T, dtype)
        self.rows = np.empty(rows, dtype)
        self.wide = np.empty((rows, 4 * E), dtype)


class Stepper:
    """Runs B sequences a character at a time with a key/value cache per sequence.

    A step reads one character per sequence: its query attends to the keys and values
    cached for the characters before it, and its own are added, so a step costs one
    character's work through every block however long the text. When a sequence's
    context is full, its cache is rebuilt from its last C/2 characters (one pass over C/2
    characters every C/2 steps: amortised, one more character's work per step), so each
    character sees between C/2 and C - 1 characters before it, spans the model trained
    on. (A rolling cache cannot slide: a key holds its position's embedding.)

    `state`, (1, B, S), is everything the stepper holds of each sequence, a row each:
    how many characters are cached, their ids and their keys and values. A row of zeros is
    a fresh sequence, so a server can start new requests in rows of a running batch.
    """

    def __init__(self, model: Transformer, batch_size: int):
        self.model = model
        B, C, L, N, D = batch_size, model.context, model.layers, model.heads, model.hidden_size // model.heads
        self._snapshot = Transformer(model.vocab_size, model.hidden_size, seed=None, dtype=model.dtype,
                                     layers=L, heads=N, context=C)
        np.copyto(self._snapshot.flat, model.flat)
        self._kv_shape = (B, L, 2, N, C, D)
        self._rows = np.zeros((B, 1 + C + int(np.prod(self._kv_shape[1:]))), dtype=model.dtype)
        self.logits = np.zeros((B, model.vocab_size), dtype=model.dtype)

    def _parts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        C = self.model.context
        return rows[:, 0], rows[:, 1 : 1 + C], rows[:, 1 + C :].reshape((len(rows),) + self._kv_shape[1:])

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Read ids (B,); return the logits for the next character (B, V)."""
        return self._read(np.asarray(ids).reshape(-1, 1))

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Read sequences x (B, T), T >= 1; return the logits after the last character."""
        x = np.asarray(x)
        start = 0
        while start < x.shape[1]:
            count = self._parts(self._rows)[0]
            self._slide(count >= self.model.context)
            room = self.model.context - int(self._parts(self._rows)[0].max())
            self._read(x[:, start : start + room], slid=True)
            start += room
        return self.logits

    def _read(self, ids: np.ndarray, slid: bool = False) -> np.ndarray:
        count, history, cache = self._parts(self._rows)
        if not slid:
            self._slide(count >= self.model.context)
        at = count.astype(np.intp)
        n = ids.shape[1]
        logits = self._snapshot.infer(ids, at, cache)
        history[np.arange(len(at))[:, None], at[:, None] + np.arange(n)] = ids
        count += n
        np.copyto(self.logits, logits[:, -1])
        return self.logits

    def _slide(self, full: np.ndarray) -> None:
        """Rebuild the caches of the sequences in `full` from their last C/2 characters."""
        if not full.any():
            return
        C = self.model.context
        keep = C // 2
        rows = self._rows[full]
        kept = self._parts(rows)[1][:, C - keep :].astype(np.intp)
        rows[...] = 0.0
        count, history, cache = self._parts(rows)
        if keep:
            self._snapshot.infer(kept, np.zeros(len(rows), np.intp), cache)
            history[:, :keep] = kept
        count[...] = keep
        self._rows[full] = rows

    @property
    def state(self) -> np.ndarray:
        """(1, B, S): each sequence's cache as a row (its count, ids, keys and values)."""
        return self._rows[None].copy()

    @state.setter
    def state(self, value: np.ndarray) -> None:
        if np.shape(value) != (1,) + self._rows.shape:
            raise ValueError(f"state has shape {np.shape(value)}; this stepper carries {(1,) + self._rows.shape}")
        self._rows[...] = value[0]
