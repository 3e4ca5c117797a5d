"""The vanilla RNN of the seed notebook, batched and stacked (PyTorch's nn.RNN, tanh).

    a_t = tanh(U x_t + W a_{t-1} + b)      hidden state, (H,)
    o_t = V (m_t * a_t) + c                logits, (V,)
    p_t = softmax(o_t)

m_t is a dropout mask while training with dropout (each unit kept with probability
1 - p and scaled by 1 / (1 - p)), and all ones otherwise. With layers > 1, layer l
reads the (dropped) states of layer l - 1 through its own U{l}, W{l} and b{l} in place
of x_t; U, W and b are layer 0's. nn.RNN has two biases, b_ih + b_hh; one is the same
model.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from charseq.models.recurrent import LayerBuffers, Recurrent

PARAM_NAMES = ("U", "W", "b", "V", "c")  # of one layer; layer l > 0 adds U{l}, W{l}, b{l}


class VanillaRNN(Recurrent):
    """The seed's model: tanh units, U W b V c (and U1 W1 b1 ... for stacked layers)."""

    name = "rnn"
    GATES = 1

    def _names(self, layer: int) -> dict[str, str]:
        suffix = str(layer) if layer else ""
        return {"ih": f"U{suffix}", "hh": f"W{suffix}", "b_ih": f"b{suffix}"}

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray]) -> VanillaRNN:
        """A one-layer model holding copies of existing arrays (a checkpoint's, a test's)."""
        hidden_size, vocab_size = np.shape(params["U"])
        model = cls(vocab_size, hidden_size, seed=None, dtype=np.asarray(params["W"]).dtype)
        for name in PARAM_NAMES:
            model.params[name] = params[name]
        return model

    def _layer_buffers(self, B: int, T: int, first: bool) -> Any:
        H = self.hidden_size
        return LayerBuffers(self, B, T, first, K=(T, H, B))

    def _step(self, lw: Any, t: int, hh: np.ndarray, b_hh: np.ndarray | None) -> None:
        a = lw.H[t + 1]
        np.dot(hh, lw.H[t], out=a)
        a += lw.XG[t]
        np.tanh(a, out=a)

    def _backward_layer(self, lw: Any, layer: int, dout: np.ndarray,
                        grads: MutableMapping[str, np.ndarray]) -> np.ndarray:
        np.copyto(lw.hh_T, self.params[self.roles[layer]["hh"]].T)
        W_T = lw.hh_T
        T = len(dout)
        dZ, dtanh, dh = lw.XG, lw.K, lw.dh  # the pre-activations are spent: their buffer takes dZ
        np.multiply(lw.H[1:], lw.H[1:], out=dtanh)
        np.subtract(1.0, dtanh, out=dtanh)  # 1 - a_t^2
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                np.add(dout[t], dh, out=dZ[t])  # through its own output, and through a_{t+1}
            else:
                dZ[t] = dout[t]
            dZ[t] *= dtanh[t]
            if t > 0:
                np.dot(W_T, dZ[t], out=dh)
        return dZ
