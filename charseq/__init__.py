"""charseq: character-level text generation with recurrent networks, extended by plugins.

The public names below load on first use, so that ``import charseq`` (and the start of
every ``charseq`` command) costs nothing until something is needed.
"""

from __future__ import annotations

import importlib

from charseq.version import __version__ as __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `import charseq` stays instant

_PUBLIC = {
    "Aborted": "charseq.training.interrupt",
    "Callback": "charseq.training.context",
    "CallbackDeprecation": "charseq.errors",
    "CallbackRef": "charseq.runs.spec",
    "CharseqError": "charseq.errors",
    "CharseqWarning": "charseq.errors",
    "Checkpoint": "charseq.checkpoints.format",
    "ClosingSample": "charseq.decoding.closing",
    "Corpus": "charseq.data.corpus",
    "Decoding": "charseq.decoding.settings",
    "DecodingError": "charseq.decoding.settings",
    "GRU": "charseq.models.gru",
    "LSTM": "charseq.models.lstm",
    "Model": "charseq.models.base",
    "MonitorCallback": "charseq.training.context",
    "Notice": "charseq.errors",
    "Option": "charseq.hooks.options",
    "OutputExists": "charseq.training.outputs",
    "Parameters": "charseq.models.base",
    "PluginWarning": "charseq.errors",
    "Run": "charseq.training.run",
    "RunFailed": "charseq.training.run",
    "RunResult": "charseq.training.run",
    "RunSpec": "charseq.runs.spec",
    "SaveError": "charseq.errors",
    "TrainConfig": "charseq.runs.settings",
    "TrainingContext": "charseq.training.context",
    "Trainer": "charseq.training.trainer",
    "UsageError": "charseq.errors",
    "VanillaRNN": "charseq.models.rnn",
    "Vocabulary": "charseq.data.vocab",
    "evaluate": "charseq.training.evaluation",
    "generate": "charseq.decoding.generate",
    "generate_items": "charseq.decoding.generate",
    "get_callback": "charseq.training.callbacks",
    "get_corpus": "charseq.data.corpora",
    "get_model": "charseq.models.build",
    "get_sampler": "charseq.decoding.samplers",
    "hookimpl": "charseq.hooks.specs",
    "load": "charseq.checkpoints.format",
    "reload_plugins": "charseq.hooks.registry",
    "save": "charseq.checkpoints.format",
    "stream": "charseq.decoding.generate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    else:
        try:  # a submodule, as `charseq.checkpoints.format` after `import charseq`
            value = importlib.import_module(f"charseq.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'charseq' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # what type checkers and editors see (`X as X`: a re-export)
    from charseq.checkpoints.format import Checkpoint as Checkpoint, load as load, save as save
    from charseq.runs.settings import TrainConfig as TrainConfig
    from charseq.training.context import (
        Callback as Callback,
        MonitorCallback as MonitorCallback,
        TrainingContext as TrainingContext,
    )
    from charseq.training.outputs import OutputExists as OutputExists
    from charseq.data.corpus import Corpus as Corpus
    from charseq.errors import (
        CallbackDeprecation as CallbackDeprecation,
        CharseqError as CharseqError,
        CharseqWarning as CharseqWarning,
        Notice as Notice,
        PluginWarning as PluginWarning,
        SaveError as SaveError,
        UsageError as UsageError,
    )
    from charseq.training.evaluation import evaluate as evaluate
    from charseq.decoding.closing import ClosingSample as ClosingSample
    from charseq.decoding.generate import generate as generate, generate_items as generate_items, stream as stream
    from charseq.decoding.settings import Decoding as Decoding, DecodingError as DecodingError
    from charseq.hooks.options import Option as Option
    from charseq.hooks.specs import hookimpl as hookimpl
    from charseq.training.interrupt import Aborted as Aborted
    from charseq.models.gru import GRU as GRU
    from charseq.models.lstm import LSTM as LSTM
    from charseq.models.base import Model as Model, Parameters as Parameters
    from charseq.models.rnn import VanillaRNN as VanillaRNN
    from charseq.data.corpora import get_corpus as get_corpus
    from charseq.decoding.samplers import get_sampler as get_sampler
    from charseq.hooks.registry import reload_plugins as reload_plugins
    from charseq.models.build import get_model as get_model
    from charseq.training.callbacks import get_callback as get_callback
    from charseq.runs.spec import CallbackRef as CallbackRef, RunSpec as RunSpec
    from charseq.training.run import Run as Run, RunFailed as RunFailed, RunResult as RunResult
    from charseq.training.trainer import Trainer as Trainer
    from charseq.data.vocab import Vocabulary as Vocabulary
