"""The vanilla RNN of the seed notebook, batched.

    a_t = tanh(U x_t + W a_{t-1} + b)      hidden state, (H,)
    o_t = V a_t + c                        logits, (V,)
    p_t = softmax(o_t)

x_t is one-hot, so U x_t is column x_t of U: a gather, never a matmul. Arrays
are stored with the batch in rows, so each time step is one (B, H) x (H, H)
matmul, and everything that does not recur (the output projection, softmax,
cross-entropy and their gradients) is one matmul over all T*B rows.
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES = ("U", "W", "b", "V", "c")


class VanillaRNN:
    """Parameters and the exact forward/backward pass; no training policy lives here."""

    def __init__(self, vocab_size: int, hidden_size: int, seed: int = 0, dtype=np.float32):
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError("vocab_size and hidden_size must be positive")
        rng = np.random.default_rng(seed)
        dtype = np.dtype(dtype)
        # PyTorch's nn.RNN initialisation: uniform in +-1/sqrt(H).
        k = 1.0 / np.sqrt(hidden_size)

        def uniform(*shape: int) -> np.ndarray:
            return rng.uniform(-k, k, size=shape).astype(dtype)

        self.params: dict[str, np.ndarray] = {
            "U": uniform(hidden_size, vocab_size),  # (H, V)
            "W": uniform(hidden_size, hidden_size),  # (H, H)
            "b": np.zeros(hidden_size, dtype=dtype),  # (H,)
            "V": uniform(vocab_size, hidden_size),  # (V, H)
            "c": np.zeros(vocab_size, dtype=dtype),  # (V,)
        }

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray]) -> VanillaRNN:
        """A model around existing arrays (a checkpoint's, a test's); shapes are checked."""
        hidden_size, vocab_size = params["U"].shape
        model = cls.__new__(cls)
        model.params = {name: np.ascontiguousarray(params[name]) for name in PARAM_NAMES}
        expected = {
            "U": (hidden_size, vocab_size),
            "W": (hidden_size, hidden_size),
            "b": (hidden_size,),
            "V": (vocab_size, hidden_size),
            "c": (vocab_size,),
        }
        for name, shape in expected.items():
            if model.params[name].shape != shape:
                raise ValueError(f"parameter {name} has shape {model.params[name].shape}, expected {shape}")
        return model

    @property
    def hidden_size(self) -> int:
        return self.params["W"].shape[0]

    @property
    def vocab_size(self) -> int:
        return self.params["c"].shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.params["W"].dtype

    def initial_state(self, batch_size: int) -> np.ndarray:
        return np.zeros((batch_size, self.hidden_size), dtype=self.dtype)

    # -- training -------------------------------------------------------------

    def loss_and_grads(
        self, x: np.ndarray, y: np.ndarray, h0: np.ndarray | None = None
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Mean cross-entropy per character (nats), its gradients, and the last hidden state.

        x, y: int arrays (B, T) of input ids and target ids. h0: (B, H) or None for
        zeros; the gradient stops at h0 (truncated backpropagation through time).
        """
        U, W, b, V, c = (self.params[n] for n in PARAM_NAMES)
        B, T = x.shape
        H = self.hidden_size
        xs = np.ascontiguousarray(x.T)  # (T, B) time-major
        ys = y.T.reshape(-1)  # (T*B,) row order matches the time-major states

        # Forward. A[0] is h0 and A[t+1] is a_t, so A[:-1] are each step's previous state.
        A = np.empty((T + 1, B, H), dtype=self.dtype)
        A[0] = 0 if h0 is None else h0
        Z = U.T[xs]  # (T, B, H): U x_t as a gather of columns of U
        Z += b
        for t in range(T):
            z = Z[t]
            z += A[t] @ W.T
            np.tanh(z, out=A[t + 1])
        states = A[1:].reshape(T * B, H)
        logits = states @ V.T  # (T*B, V)
        logits += c
        probs = _softmax_inplace(logits)
        rows = np.arange(T * B)
        loss = float(-np.log(probs[rows, ys]).mean())

        # Backward. dlogits of mean softmax cross-entropy is (p - onehot(y)) / (T*B).
        dlogits = probs
        dlogits[rows, ys] -= 1.0
        dlogits *= 1.0 / (T * B)
        dV = dlogits.T @ states  # (V, H)
        dc = dlogits.sum(axis=0)
        dA = (dlogits @ V).reshape(T, B, H)  # what each state costs through its own output
        dZ = dA  # reused in place: dZ[t] = (dA[t] + dh) * (1 - a_t^2)
        dZ *= 1.0 - A[1:] * A[1:]
        dh = np.zeros((B, H), dtype=self.dtype)
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                dh *= 1.0 - A[t + 1] * A[t + 1]
                dZ[t] += dh
            np.matmul(dZ[t], W, out=dh)  # the gradient that reaches a_{t-1}
        dZ2 = dZ.reshape(T * B, H)
        dW = dZ2.T @ A[:-1].reshape(T * B, H)  # (H, H)
        db = dZ2.sum(axis=0)
        dU = _scatter_columns(dZ2, xs.reshape(-1), self.vocab_size)  # (H, V)
        grads = {"U": dU, "W": dW, "b": db, "V": dV, "c": dc}
        return loss, grads, A[T].copy()

    # -- inference ------------------------------------------------------------

    def step(self, ids: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step for a batch: ids (B,), h (B, H) -> logits (B, V), new h (B, H)."""
        U, W, b, V, c = (self.params[n] for n in PARAM_NAMES)
        h = np.tanh(U.T[ids] + h @ W.T + b)
        return h @ V.T + c, h

    def forward(self, x: np.ndarray, h0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read a batch of sequences x (B, T); return the logits after the last one (B, V) and h."""
        B, T = x.shape
        if T == 0:
            raise ValueError("forward needs at least one time step")
        h = self.initial_state(B) if h0 is None else h0
        for t in range(T):
            logits, h = self.step(x[:, t], h)
        return logits, h


def _softmax_inplace(logits: np.ndarray) -> np.ndarray:
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def _scatter_columns(rows: np.ndarray, ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """dU[:, v] = sum of rows[i] over i with ids[i] == v, without np.add.at.

    Sorting by id makes each id's rows contiguous, so one np.add.reduceat sums them.
    """
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    sums = np.add.reduceat(rows[order], starts, axis=0)  # (distinct ids, H)
    dU = np.zeros((rows.shape[1], vocab_size), dtype=rows.dtype)
    dU[:, sorted_ids[starts]] = sums.T
    return dU
