"""Gated recurrent units, stacked: PyTorch's nn.GRU, in the seed's notation.

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    o_t = V (m_t * h_t) + c,   p_t = softmax(o_t)

As in PyTorch, the reset gate applies to the recurrent term after its bias b_hn. The
gates lie in the order r, z, n: weight_ih_l{k} is (W_ir|W_iz|W_in), (3H, input),
weight_hh_l{k} is (W_hr|W_hz|W_hn), (3H, H), bias_ih_l{k} and bias_hh_l{k} are (3H,);
the names are PyTorch's, so its weights copy across by name. Layer k > 0 reads the
(dropped) h_t of layer k - 1 in place of x_t; m_t is the output dropout mask.

Backward, with dh the gradient reaching h_t: dn = dh (1 - z), dz = dh (h_{t-1} - n),
and dh (direct) = dh z. Everything but dh is known once the forward pass is done, so
the products that turn dh into the gates' gradients are formed over all T steps at
once, and a step of the backward loop is one broadcast multiply and one matmul.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from charseq.models.recurrent import LayerBuffers, Recurrent


class GRU(Recurrent):
    """Stacked gated recurrent units (r, z, n gates; nn.GRU's equations and names)."""

    name = "gru"
    GATES = 3
    HIDDEN_BIAS = True
    SHARED_GATES = 2  # r and z: the input and recurrent terms are added
    # ONNX's GRU takes its gates as z, r, h (this cell's 1, 0, 2); linear_before_reset=1 is
    # PyTorch's reset gate, applied to W_hn h_{t-1} + b_hn (ONNX's Rh and Rbh).
    ONNX_OP = "GRU"
    ONNX_GATES = (1, 0, 2)
    ONNX_ATTRIBUTES = {"linear_before_reset": 1}

    def _sigmoid_columns(self) -> slice:
        return slice(0, 2 * self.hidden_size)  # r and z

    def _weights(self, lw: Any, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """As every cell's, with b_hr and b_hz folded into the input term (r and z add the two
        terms), so that a step adds b_hn alone: the recurrent bias returned is b_hn's rows."""
        ih, b_ih, hh, b_hh = super()._weights(lw, layer)
        assert b_hh is not None  # the GRU has a recurrent bias
        rz = slice(0, 2 * self.hidden_size)
        if layer == 0:
            ih[:, rz] += lw.b_hh[rz]  # layer 0's gather table holds its input bias
        else:
            b_ih[rz] += b_hh[rz]
        return ih, b_ih, hh, b_hh[rz.stop :]

    def _layer_buffers(self, B: int, T: int, first: bool) -> Any:
        H = self.hidden_size
        return LayerBuffers(self, B, T, first, HG=(T, 3 * H, B), K=(T, 3 * H, B), Kn=(T, H, B), DH=(T, H, B))

    def _step(self, lw: Any, t: int, hh: np.ndarray, b_hh: np.ndarray | None) -> None:
        H = self.hidden_size
        xg, hg, h, out = lw.XG[t], lw.HG[t], lw.H[t], lw.H[t + 1]
        np.dot(hh, h, out=hg)  # (3H, B): every gate's recurrent term in one matmul
        hg[2 * H :] += b_hh  # b_hn (b_hr and b_hz are in the input term: see _weights)
        rz = xg[: 2 * H]  # (halved: see charseq.models.recurrent)
        rz += hg[: 2 * H]
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5  # r_t, z_t
        n = xg[2 * H :]
        np.multiply(rz[:H], hg[2 * H :], out=lw.tmp)
        n += lw.tmp
        np.tanh(n, out=n)  # n_t
        np.subtract(h, n, out=out)
        out *= rz[H:]
        out += n  # h_t = n_t + z_t (h_{t-1} - n_t)

    def _backward_layer(self, lw: Any, layer: int, dout: np.ndarray,
                        grads: MutableMapping[str, np.ndarray]) -> np.ndarray:
        H = self.hidden_size
        T, _, B = dout.shape
        np.copyto(lw.hh_T, self.params[self.roles[layer]["hh"]].T)
        W_T = lw.hh_T
        R, Z, N = lw.XG[:, :H], lw.XG[:, H : 2 * H], lw.XG[:, 2 * H :]  # the gates, (T, H, B)
        HN, previous = lw.HG[:, 2 * H :], lw.H[:-1]  # W_hn h_{t-1} + b_hn; h_{t-1}
        Kn, K, scratch = lw.Kn, lw.K, lw.DH
        np.multiply(N, N, out=Kn)
        np.subtract(1.0, Kn, out=Kn)
        np.subtract(1.0, Z, out=scratch)
        Kn *= scratch  # (1 - z)(1 - n^2): dh -> d(n's pre-activation)
        Kr, Kz, Knr = K[:, :H], K[:, H : 2 * H], K[:, 2 * H :]
        np.multiply(scratch, Z, out=Kz)
        np.subtract(1.0, R, out=Kr)
        Kr *= R
        Kr *= HN
        Kr *= Kn  # dh -> d(r's pre-activation)
        np.subtract(previous, N, out=scratch)
        Kz *= scratch  # dh -> d(z's pre-activation)
        np.multiply(Kn, R, out=Knr)  # dh -> d(W_hn h_{t-1} + b_hn)
        dHG, DH, dh = lw.HG, lw.DH, lw.dh  # HN is spent: its buffer takes the recurrent terms' gradient
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                np.add(dout[t], dh, out=DH[t])  # through its own output, and through h_{t+1}
            else:
                DH[t] = dout[t]
            np.multiply(DH[t], K[t].reshape(3, H, B), out=dHG[t].reshape(3, H, B))
            if t > 0:
                np.dot(W_T, dHG[t], out=dh)
                np.multiply(DH[t], Z[t], out=lw.tmp)
                dh += lw.tmp
        lw.dhh = dHG
        dXn = lw.XG[:, 2 * H :]  # n is spent: its buffer takes its input term's gradient
        np.multiply(DH, Kn, out=dXn)
        return dXn  # r's and z's are dHG's (SHARED_GATES)
