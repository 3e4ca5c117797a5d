"""A run's time limit as a number of steps: the pace is measured over the run's first part,
then the steps that fit in the rest of the budget are planned once, and kept.

Why a number of steps and not the clock: the learning-rate schedule needs the run's length
to end with it (a cosine reaches its floor at the last step, not part way), and a run
resumed from its checkpoint must take the same steps at the same rates as the run that was
not interrupted, which no clock reading can promise. The plan is part of the training
state; a run interrupted before its plan was made measures again when it is resumed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

# The pace is measured over a window of MEASURE_SHARE of the budget, but at least a second
# (MEASURE_SECONDS; a quarter of a shorter budget): on a shared machine the pace wavers
# from one tenth of a second to the next. It takes MEASURE_STEPS steps as well, unless
# steps are so slow that twice the window passes first: then whatever steps there are.
# The steps' pace is that of the window's second half (the first steps are slow: buffers
# are made, caches filled; their time is spent and counted, but is not typical), and
# evaluations are timed apart, since they come at their own rate.
MEASURE_SHARE = 0.05
MEASURE_SECONDS = 1.0
MEASURE_STEPS = 20
# When training gets slower after the plan (another job takes the cores), the run still
# ends at its planned step, since that keeps its schedule whole and a resumed run exact;
# but not beyond this much over the budget, where it stops at once: OVERRUN_SHARE of the
# budget, and never less than OVERRUN_SECONDS, jitter that a loaded machine makes in any
# run (a collection, a slow save), which must not cut a short run for nothing.
OVERRUN_SHARE = 0.1
OVERRUN_SECONDS = 10.0
# A step this many times slower than the measure's median is a stall (the process stopped,
# the machine froze), not the pace: left out of the plan. Steady contention slows every
# step alike, and is the pace.
STALL = 5.0


def overrun_allowed(limit: float) -> float:
    """Seconds past the time limit after which a run stops before its planned step."""
    return max(OVERRUN_SHARE * limit, OVERRUN_SECONDS)


@dataclass(frozen=True)
class Pace:
    """What a run's training costs, measured: seconds a step, and seconds an evaluation."""

    step_seconds: float
    evaluation_seconds: float


def evaluations(first: int, last: int, steps_per_epoch: int, eval_every: int) -> int:
    """How many evaluations a run makes after step `first` up to step `last`: one at each
    epoch's end, one every `eval_every` steps between them, and one at `last` when it ends
    part way through an epoch, unless one was due there anyway (the trainer's rules)."""
    epoch_ends = last // steps_per_epoch - first // steps_per_epoch
    between = 0
    if eval_every:
        both = math.lcm(eval_every, steps_per_epoch)
        between = (last // eval_every - first // eval_every) - (last // both - first // both)
    ends_part_way = last > first and last % steps_per_epoch and not (eval_every and last % eval_every == 0)
    return epoch_ends + between + (1 if ends_part_way else 0)


def plan(step: int, seconds_left: float, pace: Pace, steps_per_epoch: int, eval_every: int) -> int:
    """The last step of a run at `step` with `seconds_left`: the most steps whose training
    and evaluations fit (at least none, at most 2**62)."""
    def cost(last: int) -> float:
        return (last - step) * pace.step_seconds + evaluations(step, last, steps_per_epoch, eval_every) * \
            pace.evaluation_seconds

    low, high = step, step + min(1 << 61, int(max(0.0, seconds_left) / max(pace.step_seconds, 1e-9)) + 1)
    while low < high:  # the cost grows with the steps: the last one that fits
        middle = (low + high + 1) // 2
        if cost(middle) <= seconds_left:
            low = middle
        else:
            high = middle - 1
    return low


class Stopwatch:
    """Measures one fit()'s pace until there is enough to plan by: its steps and seconds,
    and the time of its evaluations apart."""

    def __init__(self, limit: float, step: int):
        self.window = max(MEASURE_SHARE * limit, min(MEASURE_SECONDS, limit / 4))
        self.first_step = step
        self.started = time.perf_counter()
        self.evaluating = 0.0  # seconds spent in evaluations (and what callbacks did at them)
        self.evaluated = 0
        self.half = False  # whether the window's second half, whose steps are timed, began
        self._last: tuple[float, int, float] = (self.started, step, 0.0)  # (time, step, evaluating) last seen
        self._steps: list[float] = []  # seconds a step, over the second half (between two looks)

    def evaluation(self, seconds: float) -> None:
        self.evaluating += seconds
        self.evaluated += 1

    def enough(self, step: int) -> bool:
        """Whether the pace measured by `step` is enough to plan by (called between steps)."""
        now = time.perf_counter()
        steps, elapsed = step - self.first_step, now - self.started
        if self.half:
            seen, seen_step, seen_evaluating = self._last
            if step > seen_step:
                training = now - seen - (self.evaluating - seen_evaluating)
                self._steps += [max(training, 0.0) / (step - seen_step)] * (step - seen_step)
        elif steps >= MEASURE_STEPS / 2 and elapsed >= self.window / 2:
            self.half = True
        self._last = (now, step, self.evaluating)
        return steps >= 1 and (elapsed >= 2 * self.window or steps >= MEASURE_STEPS and elapsed >= self.window)

    def pace(self, step: int, estimate: float = 0.0, probing: float = 0.0) -> Pace:
        """The pace measured by `step`. A step costs the mean of the second half's steps,
        leaving out those STALL times slower than their median: a process stopped, or a
        machine that froze for a moment, would otherwise plan the run far short (the time
        it lost is spent all the same, and counted). Without such steps, the mean of all.
        An evaluation costs what those measured cost; when none came in the measured
        part, `estimate` (one timed on a sample, which took `probing` seconds: not the
        steps')."""
        steps = self._steps
        if steps:
            typical = sorted(steps)[len(steps) // 2]
            kept = [seconds for seconds in steps if seconds <= STALL * typical]
            step_seconds = sum(kept) / len(kept)
        else:
            training = time.perf_counter() - self.started - self.evaluating - probing
            step_seconds = max(training, 0.0) / max(1, step - self.first_step)
        per_evaluation = self.evaluating / self.evaluated if self.evaluated else estimate
        return Pace(step_seconds, per_evaluation)
