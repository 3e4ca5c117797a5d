"""Ctrl-C and SIGTERM during training: stop cleanly at the next step, or abort on the second.

The first signal only sets ``trainer.interrupted``; the trainer finishes the step it is
in, so the run can save a checkpoint that resumes exactly. A second one raises Aborted at
once; checkpoints are written atomically, so whatever was on disk stays whole.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

# Ctrl-C, a service manager's stop, and a closed terminal or SSH session.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class Aborted(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM: stop at once. ``signum`` is the signal, ``message`` what
    became of the run once it has been said."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"aborted by signal {signum}")
        self.signum, self.message = signum, message

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


@contextlib.contextmanager
def stop_on_signals(trainer: Any) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM ask `trainer` to stop at the next step boundary."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def handle(signum, frame):
        if trainer.interrupted is not None:
            raise Aborted(signum)
        trainer.interrupted = signum

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
