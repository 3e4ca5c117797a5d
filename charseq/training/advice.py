"""Advice a finished run earns: a run that ends far worse than a uniform guess over its
symbols has diverged (a step size far too large, most often), and says what to try."""

from __future__ import annotations

import math
from typing import Any

from charseq.errors import setting
from charseq.runs.settings import TrainConfig


MARGIN = 1.0  # nats above a uniform guess: a fresh or barely trained model scores about ln(V)


def worse_than_guessing(metrics: dict[str, Any], symbols: int, config: TrainConfig) -> str | None:
    """A warning when the run's training loss ends more than MARGIN above ln(symbols), what
    a uniform guess scores (a perplexity e times the guess's); else None. Only the training
    loss: a held-out part unlike the rest may score worse than guessing on a model that
    learnt its training text well, which is no divergence."""
    guess = math.log(symbols) if symbols > 1 else 0.0
    worst = metrics.get("loss")
    if not isinstance(worst, (int, float)) or math.isnan(worst) or worst <= guess + MARGIN:
        return None
    tries = [f"a smaller learning rate ({setting('lr')}, now {config.lr:g})"]
    if not (config.clip_norm or config.clip):
        tries.append(f"clipping the gradient's norm ({setting('clip_norm', 1)})")
    if config.optimizer == "sgd":
        tries.append(f"the Adam optimizer ({setting('optimizer', 'adam')})")
    return (f"the run ended far worse than a uniform guess: loss {worst:.4g} nats/char, where guessing among its "
            f"{symbols} symbols scores ln {symbols} = {guess:.2f}; if it diverged, try {_either(tries)}")


def _either(tries: list[str]) -> str:
    return tries[0] if len(tries) == 1 else ", ".join(tries[:-1]) + " or " + tries[-1]
