"""charseq: character-level text generation with a vanilla RNN, extended by plugins."""

__version__ = "0.1.0"

from charseq.checkpoint import Checkpoint, load, save
from charseq.corpus import Corpus
from charseq.errors import CharseqError, PluginWarning, UsageError
from charseq.generate import generate
from charseq.hookspecs import hookimpl
from charseq.model import VanillaRNN
from charseq.trainer import TrainConfig, Trainer
from charseq.vocab import Vocabulary

__all__ = [
    "Checkpoint",
    "CharseqError",
    "Corpus",
    "PluginWarning",
    "TrainConfig",
    "Trainer",
    "UsageError",
    "VanillaRNN",
    "Vocabulary",
    "generate",
    "hookimpl",
    "load",
    "save",
]
