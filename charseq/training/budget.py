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
import statistics
import time
from array import array
from dataclasses import dataclass

import numpy as np

# The pace is measured over a window of MEASURE_SHARE of the budget, but at least a second
# (MEASURE_SECONDS; a quarter of a shorter budget): on a shared machine the pace wavers
# from one tenth of a second to the next. It takes MEASURE_STEPS steps as well, unless
# steps are so slow that twice the window passes first: then SLOW_STEPS at least.
# Each step is timed, evaluations apart (they come at their own rate). The window counts
# the steps' own time, stalls left out (see STALL), and a step costs the mean of the later
# half of them (the first steps are slow: buffers are made, caches filled; their time is
# spent and counted, but is not typical).
MEASURE_SHARE = 0.05
MEASURE_SECONDS = 1.0
MEASURE_STEPS = 20
SLOW_STEPS = 3  # the fewest steps that tell a stall from slow steps (a stall is not its own median)
# When training gets slower after the plan (another job takes the cores), the run still
# ends at its planned step, since that keeps its schedule whole and a resumed run exact;
# but not beyond this much over the budget, where it stops at once: OVERRUN_SHARE of the
# budget, and never less than OVERRUN_SECONDS, jitter that a loaded machine makes in any
# run (a collection, a slow save), which must not cut a short run for nothing.
OVERRUN_SHARE = 0.1
OVERRUN_SECONDS = 10.0
# A step STALL times slower than the measure's median, and longer than STALL_SHARE of its
# window, is a stall (the process stopped, the machine froze), not the pace: left out of the
# plan. Contention slows steps alike, and a CPU quota stops the process for a fraction of
# each period (100 ms by default): both are the pace, and kept. What a stall shorter than
# STALL_SHARE of the window costs the plan is at most that share of it.
STALL = 5.0
STALL_SHARE = 0.1
# Evaluations come few in a window: with fewer than this many measured, one timed on a
# sample (twice: the quicker) is weighed too, and the quicker of the two rules.
EVALUATIONS_TO_TRUST = 3


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
    """Measures one fit()'s pace until there is enough to plan by: each step's seconds, and
    each evaluation's apart."""

    def __init__(self, limit: float, step: int):
        self.window = max(MEASURE_SHARE * limit, min(MEASURE_SECONDS, limit / 4))
        self.first_step = step
        self.started = time.perf_counter()
        self.evaluating = 0.0  # seconds spent in evaluations (and what callbacks did at them)
        self.evaluations: list[float] = []  # the seconds of each
        self._last: tuple[float, int, float] = (self.started, step, 0.0)  # (time, step, evaluating) last seen
        self._steps = array("d")  # seconds a step, between two looks (a window may hold millions)
        self._look_again = 0  # steps measured before the stalls are looked for again

    @property
    def evaluated(self) -> int:
        return len(self.evaluations)

    def evaluation(self, seconds: float) -> None:
        self.evaluating += seconds
        self.evaluations.append(seconds)

    def enough(self, step: int) -> bool:
        """Whether the pace measured by `step` is enough to plan by (called between steps):
        a window's worth of steps, stalls left out. Cheap while the clock alone says it is
        not; then the stalls are looked for at most every tenth more steps."""
        now = time.perf_counter()
        seen, seen_step, seen_evaluating = self._last
        if step > seen_step:
            training = now - seen - (self.evaluating - seen_evaluating)
            self._steps.extend([max(training, 0.0) / (step - seen_step)] * (step - seen_step))
        self._last = (now, step, self.evaluating)
        steps, elapsed = len(self._steps), now - self.started
        if steps < SLOW_STEPS or steps < self._look_again or \
                not (elapsed >= 2 * self.window or steps >= MEASURE_STEPS and elapsed >= self.window):
            return False
        self._look_again = steps + max(1, steps // 10)
        timed = float(self._without_stalls(np.frombuffer(self._steps)).sum())
        return timed >= 2 * self.window or steps >= MEASURE_STEPS and timed >= self.window

    def pace(self, step: int, estimate: float = 0.0, probing: float = 0.0) -> Pace:
        """The pace measured by `step`. A step costs the mean of the later half of the steps,
        stalls left out: a process stopped, or a machine that froze for a moment, would
        otherwise plan the run far short (the time it lost is spent all the same, and
        counted). An evaluation costs the lower median of those measured, or, with fewer
        than EVALUATIONS_TO_TRUST of them, the least of that and `estimate` (timed on a
        sample, which took `probing` seconds: not the steps'), so that one evaluation that
        froze is not the plan's."""
        later = self._without_stalls(np.frombuffer(self._steps)[len(self._steps) // 2 :])
        if later.size:
            step_seconds = float(later.mean())
        else:  # (no step timed: not after enough())
            training = time.perf_counter() - self.started - self.evaluating - probing
            step_seconds = max(training, 0.0) / max(1, step - self.first_step)
        costs = [statistics.median_low(self.evaluations)] if self.evaluations else []
        if len(self.evaluations) < EVALUATIONS_TO_TRUST and (estimate or not costs):  # (0: nothing held out)
            costs.append(estimate)
        return Pace(step_seconds, min(costs))

    def _without_stalls(self, seconds: np.ndarray) -> np.ndarray:
        """The steps' seconds without the stalls among them."""
        if not seconds.size:
            return seconds
        return seconds[seconds <= max(STALL * float(np.median(seconds)), STALL_SHARE * self.window)]

