"""The seed notebook's training loop, kept as the baseline the toolkit is measured against:
one window at a time, (H, 1) column vectors, one-hot inputs multiplied by U, loss summed
over the window, element-wise clipping at 5, SGD with lr 0.1."""

from __future__ import annotations

import time

import numpy as np

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def train_seed_style(hidden=64, windows=300, seq_len=6, epochs=100, lr=0.1, clip=5.0, seed=0) -> tuple[float, float]:
    """Train the alphabet task as the notebook did; returns (seconds, final loss per window)."""
    rng = np.random.default_rng(seed)
    V = len(LETTERS)
    U = rng.uniform(-0.1, 0.1, (hidden, V))
    W = rng.uniform(-0.1, 0.1, (hidden, hidden))
    Vw = rng.uniform(-0.1, 0.1, (V, hidden))
    b = np.zeros((hidden, 1))
    c = np.zeros((V, 1))
    starts = rng.integers(0, V, windows)
    data = [[(s + k) % V for k in range(seq_len + 1)] for s in starts]
    started = time.perf_counter()
    for _ in range(epochs):
        total = 0.0
        for window in data:
            xs, ys = window[:-1], window[1:]
            a = {-1: np.zeros((hidden, 1))}
            p, x_cols = {}, {}
            loss = 0.0
            for t in range(seq_len):
                x_cols[t] = np.zeros((V, 1))
                x_cols[t][xs[t]] = 1
                a[t] = np.tanh(U @ x_cols[t] + W @ a[t - 1] + b)
                o = Vw @ a[t] + c
                p[t] = np.exp(o - o.max()) / np.sum(np.exp(o - o.max()))
                loss -= np.log(p[t][ys[t], 0])
            dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(Vw)
            db, dc = np.zeros_like(b), np.zeros_like(c)
            da_next = np.zeros((hidden, 1))
            for t in reversed(range(seq_len)):
                do = p[t].copy()
                do[ys[t]] -= 1
                dV += do @ a[t].T
                dc += do
                da = Vw.T @ do + da_next
                dz = (1 - a[t] ** 2) * da
                db += dz
                dU += dz @ x_cols[t].T
                dW += dz @ a[t - 1].T
                da_next = W.T @ dz
            for param, grad in ((U, dU), (W, dW), (Vw, dV), (b, db), (c, dc)):
                np.clip(grad, -clip, clip, out=grad)
                param -= lr * grad
            total += loss
    return time.perf_counter() - started, total / windows


if __name__ == "__main__":
    seconds, loss = train_seed_style()
    print(f"seed-style loop: {seconds:.1f} s, final loss {loss:.5f} per window")
