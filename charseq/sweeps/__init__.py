"""Sweeps: many training runs over a search space, on Optuna (the sweep extra).

A study lives in a storage that several processes, or machines, share (storage). Each
trial trains a run with settings drawn from the search space (space), in a folder of the
study's own (study), by workers that report each evaluation to a pruner and record how the
trial ended (workers), each numbered by the storage and drawing from a seed of its own
(roster); the report lists the trials, who ran them, and the best with its checkpoint.
"""

from charseq.sweeps.space import Param
from charseq.sweeps.storage import DEFAULT_STORAGE, check_storage, passwords_hidden, require_optuna, shown_url
from charseq.sweeps.study import DEFAULT_DIRECTORY, PRUNERS, DirectoryTaken, Sweep, preflight, report
from charseq.sweeps.workers import Interrupted, run_sweep

__all__ = ["DEFAULT_DIRECTORY", "DEFAULT_STORAGE", "PRUNERS", "DirectoryTaken", "Interrupted", "Param", "Sweep",
           "check_storage", "passwords_hidden", "preflight", "report", "require_optuna", "run_sweep", "shown_url"]
