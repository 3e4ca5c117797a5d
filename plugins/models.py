"""Bundled models: the seed's vanilla RNN, GRU and LSTM, each with stacked layers, and a transformer.

Registered through the same hook a third party's model uses (see docs/plugins.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from charseq import hookimpl
from charseq.errors import UsageError


def _model(cls: type, help: str) -> Any:
    def factory(vocab_size: int, hidden_size: int, seed: int | None = 0, dtype: Any = np.float32,
                layers: int = 1) -> Any:
        try:
            return cls(vocab_size, hidden_size, seed=seed, dtype=dtype, layers=layers)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    factory.__doc__ = help + "\n\nlayers: stacked layers, each of --hidden-size units\n"  # its line in `charseq models`
    return factory


@hookimpl
def register_models(register):
    from charseq.models.gru import GRU
    from charseq.models.lstm import LSTM
    from charseq.models.rnn import VanillaRNN

    register("rnn", _model(VanillaRNN, "The seed's vanilla RNN (tanh): U W b V c. Options: layers."))
    register("gru", _model(GRU, "Gated recurrent units, as PyTorch's nn.GRU. Options: layers."))
    register("lstm", _model(LSTM, "Long short-term memory, as PyTorch's nn.LSTM. Options: layers."))
    register("transformer", transformer)


def transformer(vocab_size: int, hidden_size: int, seed: int | None = 0, dtype: Any = np.float32,
                layers: int = 4, heads: int = 4, context: int = 64) -> Any:
    """A decoder-only transformer (nanoGPT's GPT), --hidden-size wide. Options: layers, heads, context.

    layers: blocks of causal self-attention and an MLP
    heads: attention heads per block; they must divide --hidden-size
    context: the most characters it reads at once (windows, items and generation's reach)
    """
    from charseq.models.transformer import Transformer

    try:
        return Transformer(vocab_size, hidden_size, seed=seed, dtype=dtype, layers=layers, heads=heads,
                           context=context)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# What it trains with where the run does not say (above a corpus's suggestions, which are the
# recurrent cells'): nanoGPT's CPU configuration's shape (4 blocks of 4 heads, width 128,
# context 64), Adam at 3e-3 with 100 warmup steps and nanoGPT's weight decay of 0.1 (level at
# five minutes, 1.635 against 1.638 without; it is what lets twenty minutes beat nanoGPT), no
# dropout (0.1 did worse at twenty minutes), and the embeddings' steps no larger than the
# rest's; the batch is the corpus's (32 windows or items: at 12, as nanoGPT's, five minutes of
# text and two of names ended worse; 16 did no better at twenty with four blocks). At one,
# five and twenty minutes two blocks and batches of 16 did better (the sweeps there); the defaults keep
# nanoGPT's shape, the one people compare. Measured on tiny-shakespeare and names: see docs/explanation/defaults.md.
transformer.training_defaults = {  # type: ignore[attr-defined]
    "hidden_size": 128, "optimizer": "adam", "lr": 3e-3, "warmup": 100, "dropout": 0.0, "input_lr_scale": 1.0,
    "weight_decay": 0.1,
}
