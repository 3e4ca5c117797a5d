"""The CLI's view of a training run: a tqdm bar with live loss and epoch lines at a
readable rate (every epoch with --all-epochs; the metrics log has every evaluation).

Part of the CLI layer (it imports tqdm and click); the core never imports it.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

from charseq.hooks import hookimpl

_REFRESH_SECONDS = 0.1
# Epoch lines at most about this often, as a progress log prints: the alphabet task ends
# 180 epochs in under a second, and a wall of numbers is not a first screen.
EPOCH_LINE_SECONDS = 1.0
# Columns left free at the bar's end for the "^C" a terminal echoes at the cursor when
# Ctrl-C is pressed: at full width the echo would wrap to a line of its own, and the
# bar's line, which is all that closing the bar clears, would stay on screen above it.
_ECHO_ROOM = 2


class _Bar(tqdm):
    """tqdm drawn _ECHO_ROOM columns short of the terminal's width."""

    @property
    def format_dict(self):
        values = super().format_dict
        if values.get("ncols"):
            values["ncols"] = max(1, values["ncols"] - _ECHO_ROOM)
        return values


class ProgressBar:
    """A training callback that draws progress on stderr and logs epochs on stdout."""

    def __init__(self, log_epochs: bool = True, draw: bool | None = None, write=None,
                 epoch_line_seconds: float = EPOCH_LINE_SECONDS):
        self.log_epochs = log_epochs
        self.epoch_line_seconds = epoch_line_seconds  # 0: every epoch's line
        self.draw = draw  # None: draw on a terminal only, so logs and pipes get just the epoch lines
        self.write = write  # how epoch lines reach stdout (the CLI's, which outlives a closed pipe)

    @hookimpl
    def on_train_begin(self, trainer):
        remaining = (trainer.config.epochs - trainer.epoch) * trainer.steps_per_epoch - trainer.step_in_epoch
        disable = None if self.draw is None else not self.draw
        self.bar = _Bar(total=remaining, unit="step", dynamic_ncols=True, leave=False, disable=disable,
                        file=sys.stderr if sys.stderr is not None else open(os.devnull, "w"))
        self._pending = 0
        self._last_refresh = time.monotonic()
        self._val = ""  # the last validation loss, shown beside the live one
        self._line_at: float | None = None  # when the last epoch line was printed
        self._held: str | None = None  # the last epoch's line, not printed yet (too soon after one)

    @hookimpl
    def on_step_end(self, trainer, step, loss):
        # Touch tqdm only every so often: the alphabet task takes tens of thousands of tiny steps.
        self._pending += 1
        now = time.monotonic()
        if now - self._last_refresh >= _REFRESH_SECONDS:
            try:
                self.bar.set_postfix_str(f"loss {loss:.4f}{self._val}", refresh=False)
                self.bar.update(self._pending)
            except OSError:  # stderr went away (a closed pipe): training goes on without a bar
                self.bar.disable = True
            self._pending, self._last_refresh = 0, now

    @hookimpl
    def on_evaluation(self, trainer, metrics):
        if "val_loss" in metrics:
            self._val = f" val {metrics['val_loss']:.4f}"

    @hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        """The first epoch's line, the last one's, and between them one about every
        epoch_line_seconds; the one held back is printed when training ends."""
        if not self.log_epochs:
            return
        validation = (f"  val {metrics['val_loss']:.4f} ({metrics['val_bpc']:.3f} bpc)"
                      if "val_loss" in metrics else "")
        self._held = (f"epoch {epoch:>{len(str(trainer.config.epochs))}}/{trainer.config.epochs}"
                      f"  loss {metrics['loss']:.4f}{validation}  {metrics['chars_per_sec']:,.0f} chars/s"
                      f"  {_duration(metrics['seconds'])}")
        now = time.monotonic()
        if (self._line_at is None or epoch >= trainer.config.epochs
                or now - self._line_at >= self.epoch_line_seconds):
            self._print_held()
            self._line_at = now

    def _print_held(self) -> None:
        line, self._held = self._held, None
        if line is None:
            return
        try:
            with self.bar.external_write_mode(file=sys.stdout):
                (self.write or print)(line)
        except OSError:
            self.bar.disable = True

    @hookimpl
    def on_train_end(self, trainer, metrics):
        self.close()

    def close(self) -> None:
        """Take the bar off the terminal; also for a run that ends without on_train_end
        (interrupted, or stopped by an error), so that the last message gets its own line."""
        bar = getattr(self, "bar", None)
        if bar is not None:
            self._print_held()  # the last epoch's line (early stopping, an interruption)
            try:
                width = None if bar.disable else bar.ncols  # the terminal's, less tqdm's own last column
                bar.update(self._pending)
                bar.close()
                if width:  # the whole line, a "^C" echoed after the bar included
                    bar.fp.write("\r" + " " * width + "\r")
                    bar.fp.flush()
            except (OSError, ValueError):
                pass
            self._pending = 0


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
