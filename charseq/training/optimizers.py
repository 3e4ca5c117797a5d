"""Update rules on the flat parameter and gradient buffers: a few numpy calls a step.

Each keeps its state (moments, step count) in arrays that a checkpoint can carry. Parts
of the buffer may take larger or smaller steps than the rest (``lr_scales``), and parts
(the weight matrices) may decay: shrink by lr * weight_decay each step before the rule's
own step, apart from the gradient (Loshchilov & Hutter's decoupled decay, AdamW's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from charseq.errors import UsageError


class Optimizer:
    name = ""
    moments: tuple[str, ...] = ()  # per-parameter state arrays, zero at the start
    eps: float  # set by the subclasses that use _scaled_step

    def __init__(self, size: int, dtype: np.dtype, lr_scales: Sequence[tuple[slice, float]] = (),
                 decayed: Sequence[slice] = (), weight_decay: float = 0.0):
        self.state: dict[str, np.ndarray] = {name: np.zeros(size, dtype=dtype) for name in self.moments}
        self.lr_scales = [(part, scale) for part, scale in lr_scales if scale != 1.0]
        self.decayed = list(decayed) if weight_decay else []
        self.weight_decay = weight_decay
        self._scratch = np.empty(size, dtype=dtype)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """Decay the decayed parts of params, then move params against grads; grads may be
        overwritten."""
        for part in self.decayed:
            params[part] *= 1.0 - lr * self.weight_decay
        self._update(params, grads, lr)

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """The rule's own step."""
        raise NotImplementedError

    def _apply(self, params: np.ndarray, update: np.ndarray) -> None:
        """params -= update, each part of it scaled by its lr_scales factor."""
        for part, scale in self.lr_scales:
            update[part] *= scale
        params -= update

    def _scaled_step(self, params: np.ndarray, grads: np.ndarray, squares: np.ndarray, lr: float) -> None:
        """params -= lr * grads / (sqrt(squares) + eps): Adagrad's and RMSprop's step."""
        scratch = self._scratch
        np.sqrt(squares, out=scratch)
        scratch += self.eps
        np.divide(grads, scratch, out=scratch)
        scratch *= lr
        self._apply(params, scratch)


class SGD(Optimizer):
    """params -= lr * grads: the seed notebook's update."""

    name = "sgd"

    def _update(self, params, grads, lr):
        grads *= lr
        self._apply(params, grads)


class Adagrad(Optimizer):
    """min-char-rnn's update: each parameter's step shrinks with its summed squared gradients."""

    name = "adagrad"
    moments = ("sum_squares",)
    eps = 1e-8

    def _update(self, params, grads, lr):
        sum_squares, scratch = self.state["sum_squares"], self._scratch
        np.multiply(grads, grads, out=scratch)
        sum_squares += scratch
        self._scaled_step(params, grads, sum_squares, lr)


class RMSprop(Optimizer):
    """char-rnn's update: steps scaled by a running mean of squared gradients (decay 0.95)."""

    name = "rmsprop"
    moments = ("mean_squares",)
    decay, eps = 0.95, 1e-8

    def _update(self, params, grads, lr):
        mean_squares, scratch = self.state["mean_squares"], self._scratch
        np.multiply(grads, grads, out=scratch)
        scratch *= 1 - self.decay
        mean_squares *= self.decay
        mean_squares += scratch
        self._scaled_step(params, grads, mean_squares, lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, betas 0.9 and 0.999."""

    name = "adam"
    moments = ("m", "v")
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, size, dtype, lr_scales=(), decayed=(), weight_decay=0.0):
        super().__init__(size, dtype, lr_scales, decayed, weight_decay)
        self.state["t"] = np.zeros(1, dtype=np.int64)  # the step count, for bias correction

    def _update(self, params, grads, lr):
        m, v, scratch = self.state["m"], self.state["v"], self._scratch
        self.state["t"] += 1
        t = int(self.state["t"][0])
        m *= self.beta1
        np.multiply(grads, 1 - self.beta1, out=scratch)
        m += scratch
        v *= self.beta2
        np.multiply(grads, grads, out=scratch)
        scratch *= 1 - self.beta2
        v += scratch
        # Bias correction folded into the step size and epsilon: one pass less over the arrays.
        step_size = lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        np.sqrt(v, out=scratch)
        scratch += self.eps * np.sqrt(1 - self.beta2**t)
        np.divide(m, scratch, out=scratch)
        scratch *= step_size
        self._apply(params, scratch)


RULES = {cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam)}  # in the order of settings.OPTIMIZERS


def make_optimizer(name: str, size: int, dtype: np.dtype, lr_scales: Sequence[tuple[slice, float]] = (),
                   decayed: Sequence[slice] = (), weight_decay: float = 0.0) -> Optimizer:
    try:
        return RULES[name](size, dtype, lr_scales, decayed, weight_decay)
    except KeyError:
        raise UsageError(f"unknown optimizer {name!r}; known: {', '.join(RULES)}") from None
