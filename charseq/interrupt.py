"""Ctrl-C and SIGTERM during training: stop cleanly at the next step, or abort on the second.

The first signal only sets ``trainer.interrupted``; the trainer finishes the step it is
in, so the caller can save a checkpoint that resumes exactly. A second Ctrl-C (or
SIGTERM) raises KeyboardInterrupt at once; checkpoints are written atomically, so
whatever was on disk stays whole.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from charseq.trainer import Trainer

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM ask `trainer` to stop at the next step boundary."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def handle(signum, frame):
        if trainer.interrupted is not None:
            raise KeyboardInterrupt
        trainer.interrupted = signum

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
