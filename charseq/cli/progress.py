"""The CLI's view of a training run: a tqdm bar with live loss and epoch lines at a
readable rate (every epoch with --all-epochs; the metrics log has every evaluation). A
time-limited run's bar counts down the time left until the run has planned its steps,
then the steps to the planned one.

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
    """tqdm drawn _ECHO_ROOM columns short of the terminal's width, which can say the time left."""

    @property
    def format_dict(self):
        values = super().format_dict
        if values.get("ncols"):
            values["ncols"] = max(1, values["ncols"] - _ECHO_ROOM)
        if values.get("total"):  # for _TIME_LEFT: a bar counting seconds has this many to go
            values["time_left"] = self.format_interval(max(0, values["total"] - values["n"]))
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
        disable = None if self.draw is None else not self.draw
        limit = trainer.config.time_limit
        # Until the run has planned its steps, its time is what is known of its length.
        self._counting_time = bool(limit) and trainer.planned_steps is None
        if self._counting_time:
            self._began = time.monotonic()
            total, unit, form = max(1, round(limit - trainer.wall_time)), "s", _TIME_LEFT
        else:
            total, unit, form = _steps_left(trainer), "step", None
        self.bar = _Bar(total=total, unit=unit, bar_format=form, dynamic_ncols=True, leave=False, disable=disable,
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
                if self._counting_time:
                    self._count_time(trainer, now)
                else:
                    self.bar.update(self._pending)
            except OSError:  # stderr went away (a closed pipe): training goes on without a bar
                self.bar.disable = True
            self._pending, self._last_refresh = 0, now

    def _count_time(self, trainer, now: float) -> None:
        """The seconds gone, or, once the run has planned its steps, the steps from here on."""
        if trainer.planned_steps is None:
            self.bar.update(min(self.bar.total, round(now - self._began)) - self.bar.n)
            return
        self._counting_time = False
        self.bar.unit, self.bar.bar_format = "step", None
        self.bar.reset(total=_steps_left(trainer))

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
        epochs = trainer.config.epochs  # 0: unbounded
        of = f"{epoch:>{len(str(epochs))}}/{epochs}" if epochs else f"{epoch}"
        self._held = (f"epoch {of}"
                      f"  loss {metrics['loss']:.4f}{validation}  {metrics['chars_per_sec']:,.0f} chars/s"
                      f"  {_duration(metrics['seconds'])}")
        now = time.monotonic()
        if (self._line_at is None or epochs and epoch >= epochs
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
                if not self._counting_time:
                    bar.update(self._pending)
                bar.close()
                if width:  # the whole line, a "^C" echoed after the bar included
                    bar.fp.write("\r" + " " * width + "\r")
                    bar.fp.flush()
            except (OSError, ValueError):
                pass
            self._pending = 0


_TIME_LEFT = "{l_bar}{bar}| {time_left} of the time limit left{postfix}"


def _steps_left(trainer) -> int:
    end = trainer.end_step
    return max(0, end - trainer.step) if end is not None else 0


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
