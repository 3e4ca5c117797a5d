"""Long short-term memory, stacked: PyTorch's nn.LSTM, in the seed's notation.

    i_t = sigmoid(W_ii x_t + W_hi h_{t-1} + b_i)      input gate
    f_t = sigmoid(W_if x_t + W_hf h_{t-1} + b_f)      forget gate
    g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g)         candidate
    o_t = sigmoid(W_io x_t + W_ho h_{t-1} + b_o)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t                   cell
    h_t = o_t * tanh(c_t)
    o'_t = V (m_t * h_t) + c,   p_t = softmax(o'_t)

The gates lie in PyTorch's order i, f, g, o: weight_ih_l{k} is (W_ii|W_if|W_ig|W_io),
(4H, input), weight_hh_l{k} is (4H, H). nn.LSTM has two biases that only ever appear
summed; here they are one, bias_l{k} = bias_ih_l{k} + bias_hh_l{k}, (4H,), with the
forget gate's part starting at 1 (Gers et al.; Jozefowicz et al.) so that the cell
remembers from the first step. The carried state is [h, c] per layer, (layers, B, 2H).

Backward, with dh reaching h_t and dc reaching c_t: dc += dh o (1 - tanh^2 c_t); the
gates' gradients are dc g, dc c_{t-1}, dc i, dh tanh c_t, each times its activation's
derivative, which (with everything else but dh and dc) is formed over all T steps at once.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from charseq.models.recurrent import LayerBuffers, Recurrent


class LSTM(Recurrent):
    """Stacked long short-term memory (i, f, g, o gates; nn.LSTM's equations)."""

    name = "lstm"
    GATES = 4
    STATES = 2
    # ONNX's LSTM takes its gates as i, o, f, c (this cell's 0, 3, 1, 2); the one bias is
    # its Wb, with Rb zero, and no peepholes.
    ONNX_OP = "LSTM"
    ONNX_GATES = (0, 3, 1, 2)

    def _names(self, layer: int) -> dict[str, str]:
        return {"ih": f"weight_ih_l{layer}", "hh": f"weight_hh_l{layer}", "b_ih": f"bias_l{layer}"}

    def _sigmoid_columns(self) -> np.ndarray:
        H = self.hidden_size
        return np.r_[0 : 2 * H, 3 * H : 4 * H]  # i, f and o

    def _initialise(self, rng: np.random.Generator) -> None:
        super()._initialise(rng)
        H = self.hidden_size
        for names in self.roles:
            self.params[names["b_ih"]][H : 2 * H] = 1.0

    def _layer_buffers(self, B: int, T: int, first: bool) -> Any:
        H = self.hidden_size
        lw: Any = LayerBuffers(self, B, T, first, C=(T + 1, H, B), TC=(T, H, B), hg=(4 * H, B), P=(T, 4 * H, B),
                               Ko=(T, H, B), dc=(H, B), dc_next=(H, B), scale=(4 * H, B), offset=(4 * H, B))
        scale, offset = self._scale, self._offset
        assert scale is not None and offset is not None  # made in __init__: the LSTM has sigmoid gates
        lw.scale[...], lw.offset[...] = scale[:, None], offset[:, None]  # whole columns: see _weights
        return lw

    def _step(self, lw: Any, t: int, hh: np.ndarray, b_hh: np.ndarray | None) -> None:
        H = self.hidden_size
        a = lw.XG[t]  # (4H, B)
        np.dot(hh, lw.H[t], out=lw.hg)  # every gate's recurrent term in one matmul
        a += lw.hg
        np.tanh(a, out=a)
        a *= lw.scale
        a += lw.offset  # i, f, o = sigmoid (halved inputs: see charseq.models.recurrent); g = tanh
        c = lw.C[t + 1]
        np.multiply(a[H : 2 * H], lw.C[t], out=c)
        np.multiply(a[:H], a[2 * H : 3 * H], out=lw.tmp)
        c += lw.tmp  # c_t = f c_{t-1} + i g
        np.tanh(c, out=lw.TC[t])
        np.multiply(a[3 * H :], lw.TC[t], out=lw.H[t + 1])  # h_t = o tanh(c_t)

    def _backward_layer(self, lw: Any, layer: int, dout: np.ndarray,
                        grads: MutableMapping[str, np.ndarray]) -> np.ndarray:
        H = self.hidden_size
        T, _, B = dout.shape
        np.copyto(lw.hh_T, self.params[self.roles[layer]["hh"]].T)
        W_T = lw.hh_T
        A = lw.XG
        I, F, G, O = A[:, :H], A[:, H : 2 * H], A[:, 2 * H : 3 * H], A[:, 3 * H :]
        P, Ko, TC, previous = lw.P, lw.Ko, lw.TC, lw.C[:-1]
        Pi, Pf, Pg, Po = P[:, :H], P[:, H : 2 * H], P[:, 2 * H : 3 * H], P[:, 3 * H :]
        np.subtract(1.0, I, out=Pi)
        Pi *= I
        Pi *= G  # dc -> d(i's pre-activation)
        np.subtract(1.0, F, out=Pf)
        Pf *= F
        Pf *= previous  # dc -> d(f's)
        np.multiply(G, G, out=Pg)
        np.subtract(1.0, Pg, out=Pg)
        Pg *= I  # dc -> d(g's)
        np.subtract(1.0, O, out=Po)
        Po *= O
        Po *= TC  # dh -> d(o's)
        np.multiply(TC, TC, out=Ko)
        np.subtract(1.0, Ko, out=Ko)
        Ko *= O  # dh -> dc
        dA = A  # after the gates are read below, step by step, their buffer takes dA
        dh, dc, dc_next = lw.dh, lw.dc, lw.dc_next
        dc_next[...] = 0.0  # the loss does not reach the last cell state through later steps
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                dh += dout[t]  # through its own output, and through h_{t+1}
            else:
                dh[...] = dout[t]
            np.multiply(dh, Ko[t], out=dc)
            dc += dc_next
            np.multiply(dc, F[t], out=dc_next)  # read f_t before dA[t] takes its place
            np.multiply(dc, P[t, : 3 * H].reshape(3, H, B), out=dA[t, : 3 * H].reshape(3, H, B))
            np.multiply(dh, Po[t], out=dA[t, 3 * H :])
            if t > 0:
                np.dot(W_T, dA[t], out=dh)
        return dA
