"""charseq: character-level text generation with recurrent networks, extended by plugins.

The public names below load on first use, so that ``import charseq`` (and the start of
every ``charseq`` command) costs nothing until something is needed.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `import charseq` stays instant

__version__ = "0.5.0"

_PUBLIC = {
    "Aborted": "charseq.interrupt",
    "CallbackRef": "charseq.run",
    "CharseqError": "charseq.errors",
    "CharseqWarning": "charseq.errors",
    "Checkpoint": "charseq.checkpoint",
    "Corpus": "charseq.corpus",
    "GRU": "charseq.gru",
    "LSTM": "charseq.lstm",
    "Model": "charseq.model",
    "Parameters": "charseq.model",
    "PluginWarning": "charseq.errors",
    "Run": "charseq.run",
    "RunFailed": "charseq.run",
    "RunResult": "charseq.run",
    "RunSpec": "charseq.run",
    "SaveError": "charseq.errors",
    "TrainConfig": "charseq.config",
    "Trainer": "charseq.trainer",
    "UsageError": "charseq.errors",
    "VanillaRNN": "charseq.rnn",
    "Vocabulary": "charseq.vocab",
    "evaluate": "charseq.evaluation",
    "generate": "charseq.generation",
    "get_callback": "charseq.registry",
    "get_corpus": "charseq.registry",
    "get_model": "charseq.registry",
    "get_sampler": "charseq.registry",
    "hookimpl": "charseq.hookspecs",
    "reload_plugins": "charseq.registry",
    "load": "charseq.checkpoint",
    "save": "charseq.checkpoint",
    "stream": "charseq.generation",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    else:
        try:  # a submodule, as `charseq.checkpoint` after `import charseq`
            value = importlib.import_module(f"charseq.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'charseq' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # what type checkers and editors see (`X as X`: a re-export)
    from charseq.checkpoint import Checkpoint as Checkpoint, load as load, save as save
    from charseq.config import TrainConfig as TrainConfig
    from charseq.corpus import Corpus as Corpus
    from charseq.errors import (
        CharseqError as CharseqError,
        CharseqWarning as CharseqWarning,
        PluginWarning as PluginWarning,
        SaveError as SaveError,
        UsageError as UsageError,
    )
    from charseq.evaluation import evaluate as evaluate
    from charseq.generation import generate as generate, stream as stream
    from charseq.hookspecs import hookimpl as hookimpl
    from charseq.interrupt import Aborted as Aborted
    from charseq.gru import GRU as GRU
    from charseq.lstm import LSTM as LSTM
    from charseq.model import Model as Model, Parameters as Parameters
    from charseq.rnn import VanillaRNN as VanillaRNN
    from charseq.registry import (
        get_callback as get_callback,
        get_corpus as get_corpus,
        get_model as get_model,
        get_sampler as get_sampler,
        reload_plugins as reload_plugins,
    )
    from charseq.run import (
        CallbackRef as CallbackRef,
        Run as Run,
        RunFailed as RunFailed,
        RunResult as RunResult,
        RunSpec as RunSpec,
    )
    from charseq.trainer import Trainer as Trainer
    from charseq.vocab import Vocabulary as Vocabulary
