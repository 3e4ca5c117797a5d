"""Whether a run waits for the cores. Two jobs that each take every core for BLAS slow each
other many times over (a newcomer saw 1.39 s a step where the README promised a five-minute
run). Linux counts how long a thread stood ready to run with no core free (the run-queue
wait in /proc/thread-self/schedstat); when that is a large part of a run's first seconds,
the run says so once, naming the threads setting."""

from __future__ import annotations

import os
import sys
import time
import warnings

from charseq.blas import available_cores, threads_in_use
from charseq.errors import CharseqWarning, UsageError, setting

WINDOW_SECONDS = 5.0  # measured over a run's first seconds of steps (CHARSEQ_CONTENTION_SECONDS, for tests)
WAITING = 0.25  # the part of them spent waiting for a core that earns the warning


def _window() -> float:
    text = os.environ.get("CHARSEQ_CONTENTION_SECONDS")
    if text is None:
        return WINDOW_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"CHARSEQ_CONTENTION_SECONDS must be a number of seconds above 0; got {text!r}")
    return value


def _waited() -> float | None:
    """Seconds this thread has stood ready to run with no core free; None where not known."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class CoreWait:
    """Every run's check, made by the trainer between steps: after the first WINDOW_SECONDS
    of steps, warn once if the training thread spent more than WAITING of them waiting for a
    core. Between checks it costs a comparison a step (`due`): the clock is read at steps
    that at most double, aimed at the window's end at the pace so far."""

    def __init__(self) -> None:
        self._window = _window()
        self._start: tuple[float, float] | None = None
        self.due = sys.maxsize  # the step at which to look next

    def start(self, step: int) -> None:
        waited = _waited()
        self._start = None if waited is None else (time.monotonic(), waited)
        self._first = step
        self.due = step + 1 if waited is not None else sys.maxsize

    def check(self, step: int) -> None:
        assert self._start is not None
        elapsed = time.monotonic() - self._start[0]
        if elapsed < self._window:
            # Look next about when the window will have passed, at the pace so far (a run
            # that ends soon after its window is still told).
            pace = (step - self._first) / max(elapsed, 1e-9)
            self.due = step + max(1, min(step - self._first, int(pace * (self._window - elapsed)) + 1))
            return
        self.due = sys.maxsize  # once a run
        waited = _waited()
        if waited is None:
            return
        share = (waited - self._start[1]) / elapsed
        if share > WAITING:
            cores, threads = available_cores(), threads_in_use()
            using = f"{threads} BLAS thread{'s' if threads != 1 else ''} on " if threads else ""
            if threads is not None and threads <= 1:
                advice = "this run uses one thread already: run fewer jobs at once"
            else:
                advice = ("jobs that each take every core slow each other many times over; give each job fewer, "
                          f"e.g. {setting('threads', max(1, cores // 2))}")
            warnings.warn(CharseqWarning(
                f"training waited for a free core {share:.0%} of its first {elapsed:.0f} s ({using}{cores} "
                f"core{'s' if cores != 1 else ''}): another job is using them; {advice}"), stacklevel=3)
