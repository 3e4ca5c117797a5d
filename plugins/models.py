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
                layers: int = 4, heads: int = 4, context: int = 128) -> Any:
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
