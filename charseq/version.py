"""charseq's version: what a checkpoint records, and `charseq --version` says."""

__version__ = "0.9.0"
