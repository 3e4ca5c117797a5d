"""The vanilla RNN of the seed notebook, batched.

    a_t = tanh(U x_t + W a_{t-1} + b)      hidden state, (H,)
    o_t = V (m_t * a_t) + c                logits, (V,)
    p_t = softmax(o_t)

m_t is a dropout mask while training with dropout (each unit kept with probability
1 - p and scaled by 1 / (1 - p); Zaremba et al.'s dropout on the non-recurrent
connection only), and all ones otherwise.

x_t is one-hot, so U x_t is column x_t of U: a gather, never a matmul. Arrays
are stored with the batch in rows, so each time step is one (B, H) x (H, H)
matmul, and everything that does not recur (the output projection, softmax,
cross-entropy and their gradients) is one matmul over all T*B rows.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

PARAM_NAMES = ("U", "W", "b", "V", "c")
# Up to this many symbols the input-weight gradient is one matmul against a per-batch
# one-hot; beyond, the one-hot would be large and a sort + reduceat scatter is used.
ONE_HOT_SCATTER_MAX_VOCAB = 256
_WORKSPACES_KEPT = 4


class Parameters(MutableMapping):
    """The five parameter arrays, each a view of one flat buffer, so that an optimiser can
    update them all in one numpy call. Assigning to a name copies into its view; no method
    (``update`` included) can replace a view or remove one, so the buffer stays whole."""

    def __init__(self, views: dict[str, np.ndarray]):
        self._views = views

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __setitem__(self, name: str, value) -> None:
        current = self._views[name]  # KeyError for a name that is not a parameter
        if np.shape(value) != current.shape:
            raise ValueError(f"parameter {name} has shape {current.shape}, got {np.shape(value)}")
        current[...] = value

    def __delitem__(self, name: str) -> None:
        raise TypeError("parameters cannot be removed")

    def __iter__(self):
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"Parameters({', '.join(f'{n}{list(v.shape)}' for n, v in self._views.items())})"


def _stored_shapes(H: int, V: int) -> dict[str, tuple[int, ...]]:
    """How each parameter lies in the flat buffer. U is stored as U.T (V, H) so that its
    columns, which the input gather reads and the gradient scatter writes, are rows."""
    return {"U": (V, H), "W": (H, H), "b": (H,), "V": (V, H), "c": (V,)}


def _slices(H: int, V: int) -> dict[str, tuple[slice, tuple[int, ...]]]:
    """Where each parameter lies in the flat buffer, and its stored shape."""
    layout, offset = {}, 0
    for name, shape in _stored_shapes(H, V).items():
        size = int(np.prod(shape))
        layout[name] = (slice(offset, offset + size), shape)
        offset += size
    return layout


def _views(flat: np.ndarray, hidden_size: int, vocab_size: int) -> Parameters:
    views = {}
    for name, (part, shape) in _slices(hidden_size, vocab_size).items():
        block = flat[part].reshape(shape)
        views[name] = block.T if name == "U" else block
    return Parameters(views)


class VanillaRNN:
    """Parameters and the exact forward/backward pass; no training policy lives here."""

    def __init__(self, vocab_size: int, hidden_size: int, seed: int = 0, dtype=np.float32):
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError("vocab_size and hidden_size must be positive")
        rng = np.random.default_rng(seed)
        size = sum(int(np.prod(shape)) for shape in _stored_shapes(hidden_size, vocab_size).values())
        self.flat = np.zeros(size, dtype=np.dtype(dtype))
        self.params = _views(self.flat, hidden_size, vocab_size)
        self._workspaces: dict[tuple[int, int], _Workspace] = {}
        # Uniform in +-1/sqrt(fan-in), biases at zero. A one-hot input has a fan-in of one, so
        # U is uniform in +-1: at +-1/sqrt(H) (nn.RNN's choice for dense inputs) the input
        # barely moves the state, and on tiny-shakespeare the validation loss after one
        # minute was 1.85 instead of 1.67.
        k = 1.0 / np.sqrt(hidden_size)
        self.params["U"] = rng.uniform(-1.0, 1.0, size=self.params["U"].shape)
        for name in ("W", "V"):
            self.params[name] = rng.uniform(-k, k, size=self.params[name].shape)

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray]) -> VanillaRNN:
        """A model holding copies of existing arrays (a checkpoint's, a test's)."""
        hidden_size, vocab_size = np.shape(params["U"])
        model = cls(vocab_size, hidden_size, dtype=np.asarray(params["W"]).dtype)
        for name in PARAM_NAMES:
            model.params[name] = params[name]
        return model

    @property
    def hidden_size(self) -> int:
        return self.params["W"].shape[0]

    @property
    def vocab_size(self) -> int:
        return self.params["c"].shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.flat.dtype

    def flat_slices(self) -> dict[str, slice]:
        """Where each parameter lies in `flat` (and in a gradient buffer)."""
        return {name: part for name, (part, _) in _slices(self.hidden_size, self.vocab_size).items()}

    def gradient_buffer(self) -> tuple[np.ndarray, Parameters]:
        """A flat gradient buffer laid out like the parameters, and its views by name."""
        flat = np.zeros_like(self.flat)
        return flat, _views(flat, self.hidden_size, self.vocab_size)

    # -- training -------------------------------------------------------------

    def loss(self, x: np.ndarray, y: np.ndarray, h0: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean cross-entropy per character and the last hidden state, without gradients."""
        loss = self._forward(x, y, h0)
        return loss, self._workspace(*x.shape).A[-1].copy()

    def loss_and_grads(
        self,
        x: np.ndarray,
        y: np.ndarray,
        h0: np.ndarray | None = None,
        out: Parameters | None = None,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, Parameters, np.ndarray]:
        """Mean cross-entropy per character (nats), its gradients, and the last hidden state.

        x, y: int arrays (B, T) of input ids and target ids. h0: (B, H) or None for
        zeros; the gradient stops at h0 (truncated backpropagation through time).
        out: views from gradient_buffer() to write the gradients into; by default a
        new buffer is made. dropout: the probability of dropping each state on its way
        to the output, with masks drawn from rng.
        """
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout and rng is None:
            raise ValueError("dropout needs an rng to draw its masks from")
        loss = self._forward(x, y, h0, dropout, rng)
        grads = out if out is not None else self.gradient_buffer()[1]
        self._backward(x, y, grads, bool(dropout))
        return loss, grads, self._workspace(*x.shape).A[-1].copy()

    def _forward(self, x: np.ndarray, y: np.ndarray, h0: np.ndarray | None, dropout: float = 0.0,
                 rng: np.random.Generator | None = None) -> float:
        """The loss; leaves the states, the dropout mask and the softmax in the shape's workspace."""
        U, W, b, V, c = (self.params[n] for n in PARAM_NAMES)
        B, T = x.shape
        H = self.hidden_size
        ws = self._workspace(B, T)
        A, Z = ws.A, ws.Z
        # A[0] is h0 and A[t+1] is a_t, so A[:-1] are each step's previous state.
        np.take(U.T, x.T, axis=0, out=Z)  # (T, B, H): U x_t as a gather of columns of U
        Z += b
        if h0 is None:
            A[0] = 0.0
        else:
            A[0] = h0
        for t in range(T):
            a = A[t + 1]
            np.dot(A[t], W.T, out=a)
            a += Z[t]
            np.tanh(a, out=a)
        ys = y.T.reshape(-1)  # (T*B,) row order matches the time-major states
        states = A[1:].reshape(T * B, H)
        if dropout:
            states = ws.dropped_states(states, dropout, rng)
        return _softmax_cross_entropy(states, V, c, ys, ws)  # ws.probs: the softmax

    def _backward(self, x: np.ndarray, y: np.ndarray, grads: Parameters, dropped: bool = False) -> None:
        W, V = self.params["W"], self.params["V"]
        B, T = x.shape
        H = self.hidden_size
        ws = self._workspace(B, T)
        A, Z = ws.A, ws.Z
        states = A[1:].reshape(T * B, H)
        ys = y.T.reshape(-1)
        # dlogits of mean softmax cross-entropy is (p - onehot(y)) / (T*B).
        dlogits = ws.probs
        dlogits[ws.rows, ys] -= 1.0
        dlogits *= 1.0 / (T * B)
        np.dot(dlogits.T, ws.dropped if dropped else states, out=grads["V"])  # (V, H)
        np.dot(ws.ones, dlogits, out=grads["c"])  # column sums as a gemv: faster than np.sum
        dZ = Z  # the pre-activations are spent: reuse their buffer, (T, B, H)
        np.dot(dlogits, V, out=dZ.reshape(T * B, H))  # what each a_t costs through its own output
        if dropped:
            dZ.reshape(T * B, H)[...] *= ws.mask
        dtanh = ws.dtanh
        np.multiply(A[1:], A[1:], out=dtanh)
        np.subtract(1.0, dtanh, out=dtanh)  # 1 - a_t^2
        dh = ws.dh  # the gradient reaching a_t from step t+1
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                dZ[t] += dh
            dZ[t] *= dtanh[t]
            if t > 0:
                np.dot(dZ[t], W, out=dh)
        dZ2 = dZ.reshape(T * B, H)
        np.dot(dZ2.T, A[:-1].reshape(T * B, H), out=grads["W"])  # (H, H)
        np.dot(ws.ones, dZ2, out=grads["b"])
        ws.scatter_rows(x.T.reshape(-1), dZ2, out=grads["U"].T)  # (V, H): dU.T

    def _workspace(self, B: int, T: int) -> _Workspace:
        ws = self._workspaces.get((B, T))
        if ws is None:
            if len(self._workspaces) >= _WORKSPACES_KEPT:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = self._workspaces[(B, T)] = _Workspace(B, T, self.hidden_size, self.vocab_size, self.dtype)
        return ws

    # -- inference ------------------------------------------------------------

    def stepper(self, batch_size: int) -> Stepper:
        """A one-character-at-a-time runner for generation, starting from a zero state."""
        return Stepper(self.params, batch_size)

class Stepper:
    """Advances B sequences one character at a time with every array preallocated.

    A snapshot of the parameters is taken: U x_t + b becomes a row gather of (U.T + b),
    and c rides in the output matmul as a last row of V.T against a constant 1 kept after
    the hidden state, so a step is four numpy calls.
    """

    def __init__(self, params: dict[str, np.ndarray], batch_size: int):
        U, W, b, V, c = (params[n] for n in PARAM_NAMES)
        H, vocab_size = U.shape
        dtype = W.dtype
        self.input_rows = np.ascontiguousarray(U.T) + b  # (V, H)
        self.WT = np.ascontiguousarray(W.T)  # (H, H)
        self.VT_c = np.concatenate([V.T, c[None, :]]).astype(dtype)  # (H+1, V)
        self._state = np.zeros((batch_size, H + 1), dtype=dtype)  # (B, H+1): [a_t, 1]
        self._state[:, H] = 1.0
        self.h = self._state[:, :H]  # a view: the hidden state a_t, (B, H)
        self._pre = np.empty((batch_size, H), dtype=dtype)
        self.logits = np.empty((batch_size, vocab_size), dtype=dtype)  # reused: copy to keep

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Read ids (B,); return the logits for the next character (B, V)."""
        np.dot(self.h, self.WT, out=self._pre)
        np.add(self._pre, self.input_rows[ids], out=self._pre)
        np.tanh(self._pre, out=self.h)
        np.dot(self._state, self.VT_c, out=self.logits)
        return self.logits

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Read sequences x (B, T); return the logits after the last character."""
        if x.shape[1] == 0:
            raise ValueError("feed needs at least one character")
        for t in range(x.shape[1]):
            logits = self(x[:, t])
        return logits


def _softmax_cross_entropy(states: np.ndarray, V: np.ndarray, c: np.ndarray, ys: np.ndarray,
                           ws: _Workspace) -> float:
    """Mean cross-entropy of softmax(states V.T + c) against ys; leaves the softmax in ws.probs.

    Softmax is shift-invariant. One shift by the global max is cheaper than a max per row
    and cannot overflow; should a row then underflow to all zeros (its logits far below
    another row's), the exact per-row shift is taken instead.
    """
    probs = ws.probs
    for shift_per_row in (False, True):
        np.dot(states, V.T, out=probs)  # (T*B, V) logits
        probs += c
        if shift_per_row:
            np.max(probs, axis=1, keepdims=True, out=ws.row_stat)
            probs -= ws.row_stat
        else:
            probs -= probs.max()
        target_logits = probs[ws.rows, ys]
        np.exp(probs, out=probs)
        np.dot(probs, ws.vocab_ones, out=ws.row_sum)  # row sums as a gemv
        if shift_per_row or ws.row_sum.min() > 0.0:
            break
    loss = float(np.log(ws.row_sum).sum() - target_logits.sum()) / len(probs)
    probs /= ws.row_sum[:, None]
    return loss


class _Workspace:
    """Buffers for one (B, T) shape, reused from step to step: training allocates nothing."""

    def __init__(self, B: int, T: int, H: int, V: int, dtype: np.dtype):
        self.A = np.empty((T + 1, B, H), dtype=dtype)  # [h0, a_0, ..., a_{T-1}]
        self.Z = np.empty((T, B, H), dtype=dtype)  # pre-activations, then their gradients
        self.dtanh = np.empty((T, B, H), dtype=dtype)  # 1 - a_t^2
        self.dh = np.empty((B, H), dtype=dtype)
        self.probs = np.empty((T * B, V), dtype=dtype)  # logits, then probabilities
        self.row_stat = np.empty((T * B, 1), dtype=dtype)  # per-row max
        self.row_sum = np.empty(T * B, dtype=dtype)
        self.vocab_ones = np.ones(V, dtype=dtype)
        self.rows = np.arange(T * B)
        self.ones = np.ones(T * B, dtype=dtype)
        self.vocab_size = V
        if V <= ONE_HOT_SCATTER_MAX_VOCAB:
            self.one_hot = np.zeros((T * B, V), dtype=dtype)
        self.mask = self.dropped = None  # made on first use: most shapes never drop out

    def dropped_states(self, states: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
        """states * mask, the mask 0 with probability p and 1 / (1 - p) otherwise.

        p is rounded to a multiple of 1/65536: comparing random 16-bit integers is twice as
        fast as drawing floats, and the mask is half of dropout's cost.
        """
        if self.mask is None:
            self.mask, self.dropped = np.empty_like(states), np.empty_like(states)
            self.keep = np.empty(states.shape, dtype=bool)
        bits = np.frombuffer(rng.bytes(2 * states.size), dtype=np.uint16).reshape(states.shape)
        np.greater_equal(bits, round(p * 65536), out=self.keep)
        np.multiply(self.keep, self.mask.dtype.type(1.0 / (1.0 - p)), out=self.mask)
        return np.multiply(states, self.mask, out=self.dropped)

    def scatter_rows(self, ids: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        """out[v] = sum of rows[i] over i with ids[i] == v: the transpose of the input gather.

        A matmul against the batch's one-hot is 2-5x faster than sorting (and 2-9x faster
        than np.add.at) at every benchmarked shape; past 256 symbols the one-hot would be
        large, so rows are sorted by id and summed with one np.add.reduceat.
        """
        if self.vocab_size <= ONE_HOT_SCATTER_MAX_VOCAB:
            self.one_hot.fill(0.0)
            self.one_hot[self.rows, ids] = 1.0
            np.dot(self.one_hot.T, rows, out=out)
            return
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
        out.fill(0.0)
        out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
