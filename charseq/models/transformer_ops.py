"""The transformer's elementwise parts, forward and backward, vectorised over every
position at once and writing into buffers the caller keeps: LayerNorm, GELU (tanh form) and
softmax. A sum along a row is a gemv against a vector of ones (or of 1/E), several times
faster than NumPy's reduction along a short last axis."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

EPS = 1e-5  # LayerNorm's, as PyTorch's
GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715
SHIFT_ABOVE = 40.0  # attention scores up to this are exponentiated unshifted: e^40 * T stays far inside float32
# A row of exponentials summing to less than this is shifted again by its own max: below, its
# sum may be a subnormal float32, imprecise, and its reciprocal overflow.
SMALLEST_SUM = 1e-30


def row_sums(x: np.ndarray, ones: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sums over x's last axis, keeping it (as length 1): one gemv, where np.sum along a
    short last axis is several times slower."""
    sums = np.dot(x.reshape(-1, x.shape[-1]), ones, out=out)
    return sums.reshape(x.shape[:-1] + (1,))


def softmax(A: np.ndarray, scores: Callable[[], None], ones: np.ndarray, sums: np.ndarray | None = None) -> None:
    """Softmax over the last axis of the scores `scores()` writes into A, in place (every row
    has a finite entry: its own position). Softmax is shift-invariant: scores below
    SHIFT_ABOVE cannot overflow exp unshifted, larger ones are shifted by the global max
    (as the output layer does: far cheaper than a max per row); should a row then
    underflow (its sum below SMALLEST_SUM), the scores are made again and shifted per row."""
    for per_row in (False, True):
        scores()
        if per_row:
            A -= A.max(axis=-1, keepdims=True)
        else:
            top = A.max()
            if top > SHIFT_ABOVE:
                A -= top
        np.exp(A, out=A)
        total = row_sums(A, ones, sums)
        if per_row or total.min() > SMALLEST_SUM:
            break
    np.reciprocal(total, out=total)
    A *= total


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, average: np.ndarray, xhat: np.ndarray | None = None,
                rstd: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """w (x - mean) / sqrt(var + EPS) + b over the last axis (`average`: 1/E, E times), into
    `out`; keeps xhat and 1/std, (rows, 1), for the backward pass."""
    xhat = np.empty_like(x) if xhat is None else xhat
    rstd = np.empty(x.shape[:-1] + (1,), x.dtype) if rstd is None else rstd
    out = np.empty_like(x) if out is None else out
    moment = rstd.reshape(-1)
    np.dot(x, average, out=moment)
    np.subtract(x, rstd, out=xhat)
    np.multiply(xhat, xhat, out=out)  # out is scratch until the end
    np.dot(out, average, out=moment)
    moment += EPS
    np.sqrt(moment, out=moment)
    np.reciprocal(moment, out=moment)
    xhat *= rstd
    np.multiply(xhat, w, out=out)
    out += b
    return out


def layer_norm_backward(dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, w: np.ndarray, dw: np.ndarray,
                         db: np.ndarray, dx: np.ndarray, ones: np.ndarray, average: np.ndarray,
                         scratch: np.ndarray) -> None:
    """From dy (spent), the gradients of w and b (into dw, db; `ones`: a row of ones per
    position) and of x (into dx): dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
    dxhat = dy w. `scratch` holds a number per position."""
    np.dot(ones, dy, out=db)
    np.multiply(dy, xhat, out=dx)
    np.dot(ones, dx, out=dw)
    dxhat = dy
    dxhat *= w
    np.multiply(dxhat, xhat, out=dx)
    np.dot(dx, average, out=scratch)
    np.multiply(xhat, scratch[:, None], out=dx)
    np.subtract(dxhat, dx, out=dx)
    np.dot(dxhat, average, out=scratch)
    dx -= scratch[:, None]
    dx *= rstd


def gelu(f: np.ndarray, tanh: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """0.5 f (1 + tanh(c (f + a f^3))); keeps the tanh for the backward pass."""
    tanh = np.empty_like(f) if tanh is None else tanh
    out = np.empty_like(f) if out is None else out
    np.multiply(f, f, out=tanh)
    tanh *= GELU_A
    tanh += 1.0
    tanh *= f
    tanh *= GELU_C
    np.tanh(tanh, out=tanh)
    np.add(tanh, 1.0, out=out)
    out *= f
    out *= 0.5
    return out


def gelu_backward(f: np.ndarray, t: np.ndarray, dg: np.ndarray, slope: np.ndarray) -> None:
    """dg (the gradient of GELU's output) becomes its input's, in place: GELU's slope is
    0.5 (1 + t + c f (1 + 3 a f^2) (1 - t^2)), t its tanh. f and t are spent; `slope` is scratch."""
    np.multiply(f, f, out=slope)
    slope *= 3 * GELU_A
    slope += 1.0
    slope *= f
    slope *= GELU_C
    np.multiply(t, t, out=f)
    np.subtract(1.0, f, out=f)
    slope *= f
    slope += t
    slope += 1.0
    slope *= 0.5
    dg *= slope
