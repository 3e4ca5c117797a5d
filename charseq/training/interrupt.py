"""Ctrl-C and SIGTERM during training: stop cleanly at the next step, or abort on the second.

The first signal only sets ``trainer.interrupted``; the trainer finishes the step it is
in, so the run can save a checkpoint that resumes exactly. A second one raises Aborted at
once; checkpoints are written atomically, so whatever was on disk stays whole.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
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


def take_signals(handler: Callable[[int, Any], Any], signals: Iterable[int] = SIGNALS) -> Callable[[], None]:
    """Give `signals` to `handler`, but for one that is ignored (nohup's SIGHUP, a background
    job's SIGINT): whoever started charseq chose that, and it stays ignored. The function that
    puts the handlers back. In another thread than the main one (where Python allows no
    handler), nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.signal(signum, handler) for signum in signals
                if signal.getsignal(signum) is not signal.SIG_IGN}

    def put_back() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return put_back


@contextlib.contextmanager
def stop_on_signals(trainer: Any) -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP (those not ignored) ask `trainer` to stop at
    the next step boundary."""
    def handle(signum, frame):
        if trainer.interrupted is not None:
            raise Aborted(signum)
        trainer.interrupted = signum

    put_back = take_signals(handle)
    try:
        yield
    finally:
        put_back()
