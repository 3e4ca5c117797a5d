"""Which worker is which: a number the study's storage hands out to each worker that joins,
never the same one twice, and the seed of the worker's sampler, made from the sweep's seed
and that number.

A worker's draws must differ from every other worker's (two machines given the same
``--seed`` drew the same settings), yet a seeded sweep should repeat. The hostname and the
process id differ between workers but are not repeatable; the order in which workers join
a storage is. So each worker joins by adding a trial to the study's roster, a second
Optuna study beside it (named so that no ``--study`` can take it): Optuna numbers a study's
trials in one transaction that holds the study's row (SQLite: the database) while it
counts, so two workers that join at once are given two numbers, 0, 1, 2... in the order
they joined, in any storage. Worker N's sampler is seeded from (seed, N).

The roster can be lost while the study stays (deleted on its own, or the study copied to
another storage without it): a number that a trial of the study records as its worker's is
then passed over, so that no worker draws again what an earlier one drew.
"""

from __future__ import annotations

import os
import socket
import warnings
from typing import Any

from charseq.errors import UsageError, label
from charseq.sweeps.storage import require_optuna

ROSTER = ":workers"  # the roster of study S is the study "S:workers" (a --study name has no colon)


def roster_name(study_name: str) -> str:
    return study_name + ROSTER


def is_roster(study_name: str) -> bool:
    return study_name.endswith(ROSTER)


def open_roster(study: Any) -> Any:
    """The roster of `study`, made if it is not there; one that has another shape than
    charseq's (planted: a number told to it would not be recorded) is refused."""
    optuna = require_optuna()
    storage = study._storage  # (Optuna's Study keeps it there; a roster must share it)
    roster = optuna.create_study(study_name=roster_name(study.study_name), storage=storage, load_if_exists=True,
                                 sampler=optuna.samplers.RandomSampler())
    if len(roster.directions) != 1:
        raise UsageError(f"the study {roster.study_name!r} beside study {study.study_name!r} is not charseq's list of "
                         f"workers (it has {len(roster.directions)} objectives): delete it, or give another "
                         f"{label('study')}")
    return roster


def join(study: Any) -> int:
    """A number for this worker of `study` that no other worker has been given or will be."""
    roster = open_roster(study)
    taken = {worker for trial in study.get_trials(deepcopy=False)
             if type(worker := trial.user_attrs.get("worker")) is int}
    while True:
        with warnings.catch_warnings():  # (Optuna warns that a storage with heartbeats is for optimize)
            warnings.simplefilter("ignore")
            trial = roster.ask()  # numbered atomically by the storage
        trial.set_user_attr("host", socket.gethostname())  # for people reading the roster: who it was
        trial.set_user_attr("pid", os.getpid())
        roster.tell(trial, 0.0)
        if trial.number not in taken:
            return int(trial.number)


def worker_seed(seed: int | None, worker: int) -> int | None:
    """The seed of worker `worker`'s sampler: a stream of its own, the same for the same
    (seed, worker) on any machine; None (unseeded) without a seed."""
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, worker]).generate_state(1)[0])
