"""A time limit (`--time-limit`, `time_limit=`): the run ends when its budget is spent, its
schedule planned over the budget in steps once its pace is measured, the plan recorded so
that a resumed run ends where the uninterrupted one does."""

import json
import re
import shutil
import signal
import time
import warnings

import numpy as np
import pytest

import charseq
from charseq import Run, UsageError, hookimpl
from charseq.training import budget
from conftest import InterruptAt, members_of, resign, run_cli

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(60))
SMALL = {"hidden_size": 16, "seq_len": 8, "batch_size": 4, "val_fraction": 0.1}
MARGIN = 3.0  # seconds a run may take past its budget here: loading, the last evaluation and save, a busy machine


@pytest.fixture
def fox(tmp_path):
    """A small text, as a file: a resumed run finds it again."""
    path = tmp_path / "fox.txt"
    path.write_text(TEXT)
    return f"text:{path}"


def _interrupt(trainer) -> None:
    """What Ctrl-C does to the trainer (not a callback's to do: hence the warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        trainer.interrupted = signal.SIGINT


class InterruptOncePlanned:
    """Interrupts the run, as Ctrl-C would, at the step at which it has made its plan."""

    @hookimpl
    def on_step_end(self, trainer, step):
        if trainer.planned_steps is not None:
            _interrupt(trainer)


class SlowerOncePlanned:
    """Makes every step after the plan `seconds` slower: another job took the cores."""

    def __init__(self, seconds):
        self.seconds = seconds

    @hookimpl
    def on_step_end(self, trainer, step):
        if trainer.planned_steps is not None:
            time.sleep(self.seconds)


class StallWhileMeasuring:
    """Stops the run once for `seconds` in the second half of its pace's measure, as
    SIGSTOP or a machine that froze would; or, with `every`, slows every measured step."""

    def __init__(self, seconds, every=False, after=0.7):
        self.seconds, self.every, self.after, self.done = seconds, every, after, False

    @hookimpl
    def on_step_end(self, trainer, step):
        if trainer.planned_steps is None and (self.every or not self.done and trainer.wall_time > self.after):
            self.done = True
            time.sleep(self.seconds)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_time_limited_run_ends_within_its_budget_and_says_so(tmp_path):
    out = tmp_path / "a.npz"
    started = time.perf_counter()
    result = run_cli("train", "--corpus", "alphabet", "--time-limit", "3s", "--out", out, "--threads", 1)
    took = time.perf_counter() - started
    assert took <= 3 + MARGIN
    saved = charseq.load(out)
    training = saved.training
    assert training["step"] > 1000  # thousands of the alphabet's small steps fit in 3 s
    assert training["planned_steps"] == training["step"] and training["time_up"] is True
    assert 2 <= training["wall_time"] <= 3 + MARGIN  # it used its budget, not the corpus's 180 epochs
    assert saved.config["epochs"] == 0 and saved.config["time_limit"] == 3.0  # epochs unbounded: the time decides
    lines = result.stdout.splitlines()
    assert "epochs=unbounded time-limit=3s threads=1" in lines[0]
    (message,) = [line for line in lines if line.startswith("saved ")]
    assert "its time limit (3s) ended it after " in message
    assert f"of training, at step {training['step']:,} (" in message and " epochs), loss " in message


def test_the_schedule_is_complete_when_the_time_is_up(tmp_path, fox):
    """With more epochs than fit, the cosine runs over the planned steps and ends at its
    floor at the last step, rather than being cut off part way."""
    metrics = tmp_path / "m.jsonl"
    run = Run.start(fox, out=tmp_path / "fox.npz", time_limit="3s", epochs=10_000, min_lr=1e-3,
                    callbacks=[("metrics", {"path": str(metrics)})], **SMALL)
    result = run.fit()
    assert result.status == "finished" and "its time limit (3s) ended it" in result.message
    training = charseq.load(tmp_path / "fox.npz").training
    assert training["planned_steps"] == result.step < 10_000 * run.trainer.steps_per_epoch
    rates = [line["lr"] for line in _lines(metrics)]
    assert rates[-1] == pytest.approx(1e-3)  # the rate after the last step: the cosine's floor
    assert rates[0] > 3e-3 and rates == sorted(rates, reverse=True)  # from the top, down all the way
    assert _lines(metrics)[-1]["step"] == result.step


def test_the_schedule_waits_for_the_runs_length_and_step_decay_does_not_need_it():
    unbounded = charseq.TrainConfig(epochs=0, time_limit=60, lr=1.0, min_lr=0.1, warmup=2)
    assert [unbounded.lr_at(step) for step in (0, 1, 2, 50)] == [0.5, 1.0, 1.0, 1.0]  # no end known: holds
    assert unbounded.lr_at(100, end=100) == pytest.approx(0.1) and unbounded.lr_at(51, end=100) == pytest.approx(0.55)
    step = charseq.TrainConfig(epochs=0, time_limit=60, schedule="step", lr=1.0, lr_decay=0.5, lr_decay_every=2)
    assert [step.lr_at(s, 3) for s in (5, 6, 12)] == [step.lr_at(s, 3, end=7) for s in (5, 6, 12)] == [1.0, 0.5, 0.25]


def _same_end(first, second):
    a, b = members_of(first), members_of(second)
    assert a.keys() == b.keys()
    for name in a.keys() - {"metadata", "checksum", "seal"}:  # (the metadata holds times and paths)
        assert a[name].tobytes() == b[name].tobytes(), name
    ta, tb = charseq.load(first).training, charseq.load(second).training
    assert (ta["step"], ta["planned_steps"], ta["rng"]) == (tb["step"], tb["planned_steps"], tb["rng"])
    assert [h["loss"] for h in ta["history"]] == [h["loss"] for h in tb["history"]]


def test_a_time_limited_run_resumes_exactly_on_its_recorded_plan(tmp_path, fox):
    cut = tmp_path / "cut.npz"
    first = Run.start(fox, out=cut, time_limit=3, epochs=10_000, extra_callbacks=[InterruptOncePlanned()],
                      **SMALL).fit()
    assert first.status == "interrupted"
    planned = charseq.load(cut).training["planned_steps"]
    assert planned > first.step + 100
    straight, twice = tmp_path / "straight.npz", tmp_path / "twice.npz"
    shutil.copy(cut, straight)
    shutil.copy(cut, twice)
    ended = Run.resume(straight, out=straight).fit()
    assert ended.step == planned and "its time limit (3s) ended it" in ended.message
    halfway = (first.step + planned) // 2
    again = Run.resume(twice, out=twice, extra_callbacks=[InterruptAt(halfway)]).fit()
    assert again.status == "interrupted" and again.step == halfway
    assert Run.resume(twice).fit().step == planned
    _same_end(straight, twice)  # weights, optimizer, random state and history: bit for bit


def test_a_run_interrupted_before_its_plan_measures_its_pace_again(tmp_path, fox):
    cut = tmp_path / "cut.npz"
    first = Run.start(fox, out=cut, time_limit=2, extra_callbacks=[InterruptAt(3)], **SMALL).fit()
    assert first.status == "interrupted" and "planned_steps" not in charseq.load(cut).training
    spent = charseq.load(cut).training["wall_time"]
    result = run_cli("train", "--resume", cut, "--threads", 1)
    assert "measuring its pace anew (it stopped before its plan was made)" in result.stdout
    training = charseq.load(cut).training
    assert training["planned_steps"] == training["step"] and training["time_up"]
    assert spent < training["wall_time"] <= 2 + MARGIN  # the time before the interruption counts


def test_a_resumed_run_says_where_its_plan_ends_it(tmp_path, fox):
    cut = tmp_path / "cut.npz"
    Run.start(fox, out=cut, time_limit=2, extra_callbacks=[InterruptOncePlanned()], **SMALL).fit()
    planned = charseq.load(cut).training["planned_steps"]
    result = run_cli("train", "--resume", cut, "--threads", 1)
    assert f"planned to end at step {planned:,}; saving to" in result.stdout
    assert charseq.load(cut).training["step"] == planned


def test_training_slower_than_planned_still_ends_at_the_planned_step(tmp_path):
    """A machine a few times slower after the plan: the run ends late, at its planned step,
    its schedule complete (within budget.overrun_allowed of the budget)."""
    result = Run.start("alphabet", out=tmp_path / "a.npz", time_limit=1, schedule="cosine",
                       extra_callbacks=[SlowerOncePlanned(0.0003)]).fit()
    training = charseq.load(tmp_path / "a.npz").training
    assert result.step == training["planned_steps"] and "its time limit (1s) ended it" in result.message
    assert 1.5 < training["wall_time"] < 1 + budget.overrun_allowed(1)
    assert training["history"][-1]["lr"] == 0.0  # the cosine's floor (min_lr 0)


def test_training_far_slower_than_planned_stops_past_the_budget(tmp_path):
    """So much slower that the plan would take far past the budget: the run stops once it is
    budget.overrun_allowed past it, short of its planned step, and says so."""
    result = Run.start("alphabet", out=tmp_path / "a.npz", time_limit=1,
                       extra_callbacks=[SlowerOncePlanned(0.05)]).fit()
    training = charseq.load(tmp_path / "a.npz").training
    assert result.status == "finished" and result.step < training["planned_steps"] and training["time_up"]
    assert f"cut it short, before the step it planned ({training['planned_steps']:,})" in result.message
    assert 1 + budget.overrun_allowed(1) < training["wall_time"] < 1 + budget.overrun_allowed(1) + MARGIN
    again = Run.resume(tmp_path / "a.npz")
    assert again.complete  # the time is spent: nothing left to train


@pytest.mark.parametrize("after, seconds", [(0.0, 2.5), (0.7, 1.0)])  # at the first step, half way
def test_a_stall_while_the_pace_is_measured_costs_only_the_time_it_lost(tmp_path, after, seconds):
    """Seconds lost while the pace is measured (over 1 s of steps at this budget), longer
    than twice that window, or in its second half: the plan leaves out that step, so the run
    still uses its budget, rather than planning a fraction of it."""
    result = Run.start("alphabet", out=tmp_path / "a.npz", time_limit=4,
                       extra_callbacks=[StallWhileMeasuring(seconds, after=after)]).fit()
    training = charseq.load(tmp_path / "a.npz").training
    assert result.step == training["planned_steps"] and "its time limit (4s) ended it after" in result.message
    assert 3.2 < training["wall_time"] < 4 + MARGIN


@pytest.mark.parametrize("stalled", [6, 60])  # in the measure's first half, and in its second
def test_the_pace_leaves_out_a_stalled_step_but_not_a_slower_machine(monkeypatch, stalled):
    """Steps of 10 ms, one of which took 4 s (the process was stopped): the window of 1 s
    (at a 10 s budget) counts the steps' own time, so the measure goes on until 1 s of
    them; the plan's pace is 10 ms a step."""
    now = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    watch = budget.Stopwatch(limit=10.0, step=0)
    step = 0
    while True:
        step += 1
        now[0] += 4.0 if step == stalled else 0.01
        if watch.enough(step):
            break
    assert 100 <= step <= 125  # a second of steps, looked for every tenth more steps
    assert watch.pace(step).step_seconds == pytest.approx(0.01)
    slower = budget.Stopwatch(limit=10.0, step=0)
    for step in range(1, 41):  # the machine slowed four times half way: that is the pace
        now[0] += 0.01 if step <= 20 else 0.04
        slower.enough(step)
    assert slower.pace(40).step_seconds == pytest.approx(0.04)


def test_an_evaluation_that_froze_is_left_out_of_the_plan():
    watch = budget.Stopwatch(limit=10.0, step=0)
    for seconds in (0.2, 4.0, 0.21):
        watch.evaluation(seconds)
    assert watch.pace(1, estimate=0.1).evaluation_seconds == 0.21  # three: their lower median
    one = budget.Stopwatch(10.0, 0)
    one.evaluation(4.0)  # the only one, and it froze: the sample's estimate is the quicker
    assert one.pace(1, estimate=0.3).evaluation_seconds == 0.3
    assert one.pace(1, estimate=0.0).evaluation_seconds == 4.0  # (0: nothing held out to time)
    assert budget.Stopwatch(10.0, 0).pace(1, estimate=0.3).evaluation_seconds == 0.3  # none: the sample's


def test_a_cpu_quota_is_the_pace_not_a_stall(monkeypatch):
    """A process stopped 50 ms in every 100 (a container's CPU quota): the stops recur, each
    shorter than a tenth of the window, and are the pace: twice the steps' own time."""
    now = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    watch = budget.Stopwatch(limit=20.0, step=0)
    step = 0
    while not watch.enough(step):
        step += 1
        now[0] += 0.001 + (0.05 if step % 50 == 0 else 0.0)
    assert watch.pace(step).step_seconds == pytest.approx(0.002, rel=0.05)


def test_a_run_that_ends_well_before_its_budget_says_why(tmp_path):
    """Steps that ran slowly while measured and fast after it: the run ends at its plan,
    well inside its budget, and says it ended early, its steps faster than it measured."""
    result = Run.start("alphabet", out=tmp_path / "a.npz", time_limit=14,
                       extra_callbacks=[StallWhileMeasuring(0.004, every=True)]).fit()
    training = charseq.load(tmp_path / "a.npz").training
    assert result.step == training["planned_steps"] and training["wall_time"] < 14 - budget.overrun_allowed(14)
    assert "its time limit (14s) ended it after " in result.message
    assert f"at step {result.step:,} (" in result.message
    assert "the step it planned: early, its steps faster than while it measured its pace" in result.message


def test_epochs_that_end_first_end_the_run_as_if_there_were_no_time_limit(tmp_path, fox):
    limited = Run.start(fox, out=tmp_path / "limited.npz", time_limit=10, epochs=40, **SMALL)
    result = limited.fit()
    plain = Run.start(fox, out=tmp_path / "plain.npz", epochs=40, **SMALL).fit()
    assert result.message.startswith(f"saved {tmp_path / 'limited.npz'} after 40 epochs")
    training = charseq.load(tmp_path / "limited.npz").training
    assert training["planned_steps"] > result.step == plain.step == 40 * limited.trainer.steps_per_epoch
    assert "time_up" not in training
    a, b = members_of(tmp_path / "limited.npz"), members_of(tmp_path / "plain.npz")
    assert all(a[name].tobytes() == b[name].tobytes() for name in a if name.startswith(("param.", "optimizer.")))


def test_more_epochs_on_resuming_go_on_within_the_time_limit(tmp_path, fox):
    out = tmp_path / "fox.npz"
    assert Run.start(fox, out=out, time_limit=20, epochs=2, **SMALL).fit().epoch == 2
    resumed = Run.resume(out, epochs=4)
    assert not resumed.complete
    assert resumed.fit().message.startswith(f"saved {out} after 4 epochs")


@pytest.mark.parametrize("bad", ["5 minutes", "-3", "1m30h", "soon", "1e3", "90 s", "9999999h", "\u0663m", "\u0665"])
def test_a_bad_duration_is_refused_in_one_line_that_shows_the_forms(tmp_path, bad):
    result = run_cli("train", "--corpus", "alphabet", "--time-limit", bad, "--out", tmp_path / "a.npz", ok=False)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"--time-limit {bad!r} is not a duration" in lines[0]
    assert "90s, 5m, 1h30m, 2h or 300 (seconds)" in lines[0] and not (tmp_path / "a.npz").exists()
    with pytest.raises(UsageError, match="is not a duration"):
        Run.start("alphabet", out=tmp_path / "b.npz", time_limit=bad)


def test_unbounded_epochs_need_a_time_limit(tmp_path):
    result = run_cli("train", "--corpus", "alphabet", "--epochs", 0, "--out", tmp_path / "a.npz", ok=False)
    assert result.exit_code == 2 and "--epochs must be a whole number of at least 1 (0, unbounded, goes with " \
                                      "--time-limit), got 0" in result.output
    with pytest.raises(UsageError, match=r"^epochs must be a whole number of at least 1 \(0, unbounded, goes with "
                                         r"time_limit\), got 0$"):
        Run.start("alphabet", out=tmp_path / "b.npz", epochs=0)


def test_a_number_past_any_float_is_refused_in_one_line(tmp_path):
    with pytest.raises(UsageError, match="is not a duration of at most 8784h"):
        Run.start("alphabet", out=tmp_path / "a.npz", time_limit=10**400)


@pytest.mark.parametrize("given, seconds", [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2h", 7200), ("300", 300),
                                            (300, 300), (2.5, 2.5), ("1.5h", 5400), (np.int64(300), 300),
                                            (np.float32(2.5), 2.5)])
def test_the_api_takes_a_duration_or_seconds(tmp_path, given, seconds):
    run = Run.start("alphabet", out=tmp_path / "a.npz", time_limit=given)
    assert run.config.time_limit == seconds and run.config.epochs == 0
    assert Run.start("alphabet", out=tmp_path / "b.npz", time_limit=given, epochs=7).config.epochs == 7
    assert Run.start("alphabet", out=tmp_path / "c.npz", time_limit=0).config.epochs == 180  # 0: no limit


def test_a_resumed_run_keeps_its_time_limit(tmp_path, fox):
    cut = tmp_path / "cut.npz"
    Run.start(fox, out=cut, time_limit="2s", extra_callbacks=[InterruptAt(5)], **SMALL).fit()
    assert Run.resume(cut, time_limit="2s").config.time_limit == 2.0  # the same, said otherwise: fine
    assert Run.resume(cut, time_limit=2).config.time_limit == 2.0
    with pytest.raises(UsageError, match=r"time_limit='3s' differs from the resumed run's 2s; a resumed run keeps its "
                                         r"settings \(it may change epochs=…"):
        Run.resume(cut, time_limit="3s")
    result = run_cli("train", "--resume", cut, "--time-limit", "0", ok=False)
    assert result.exit_code == 2 and "--time-limit 0 differs from the resumed run's 2s" in result.output
    plain = tmp_path / "plain.npz"
    Run.start(fox, out=plain, extra_callbacks=[InterruptAt(5)], **SMALL).fit()
    with pytest.raises(UsageError, match=r"time_limit='5m' differs from the resumed run's 0 \(no limit\)"):
        Run.resume(plain, time_limit="5m")  # nor is one added


def test_a_planned_run_keeps_its_eval_every_which_its_plan_counted(tmp_path, fox):
    planned, measuring = tmp_path / "planned.npz", tmp_path / "measuring.npz"
    Run.start(fox, out=planned, time_limit=2, extra_callbacks=[InterruptOncePlanned()], **SMALL).fit()
    with pytest.raises(UsageError, match=r"eval_every=5 differs from the resumed run's 0; a time-limited run keeps it "
                                         r"once its plan is made, which counted its evaluations"):
        Run.resume(planned, eval_every=5)
    result = run_cli("train", "--resume", planned, "--eval-every", 5, ok=False)
    assert result.exit_code == 2 and "--eval-every 5 differs from the resumed run's 0" in result.output
    Run.start(fox, out=measuring, time_limit=2, extra_callbacks=[InterruptAt(3)], **SMALL).fit()
    assert Run.resume(measuring, eval_every=5).config.eval_every == 5  # no plan yet: it will count them


def test_a_plain_resume_goes_on_with_the_threads_the_run_trained_with(tmp_path, fox):
    cut = tmp_path / "cut.npz"
    run_cli("train", "--corpus", fox, "--out", cut, "--threads", 1, "--epochs", 3, "--hidden-size", 16,
            "--seq-len", 8, "--batch-size", 4, "--callback", "checkpoint:every=1", "-q")
    done = charseq.load(cut)
    more = run_cli("train", "--resume", cut, "--epochs", 4)
    assert "threads=1" in more.stdout.splitlines()[0] and "BLAS thread" not in more.output
    assert done.training["blas_threads"] == 1 == charseq.load(cut).training["blas_threads"]
    other = run_cli("train", "--resume", cut, "--epochs", 5, "--threads", 2)
    assert "threads=2" in other.stdout.splitlines()[0]  # asked for: given, with the warning where BLAS has two


def test_a_time_limit_said_as_charseq_says_it_is_the_runs_own(tmp_path, fox):
    cut = tmp_path / "cut.npz"
    Run.start(fox, out=cut, time_limit=12.34, extra_callbacks=[InterruptAt(5)], **SMALL).fit()
    assert Run.resume(cut, time_limit="12.3s").config.time_limit == 12.34  # as the run line says it
    result = run_cli("train", "--resume", cut, "--time-limit", "12.3s", "--epochs", 1)
    assert "time-limit=12.3s" in result.stdout.splitlines()[0]
    with pytest.raises(UsageError, match="differs from the resumed run's 12.3s"):
        Run.resume(cut, time_limit="12.4s")


def test_the_time_said_is_the_time_saved(tmp_path):
    result = Run.start("alphabet", out=tmp_path / "a.npz", time_limit=0.05).fit()
    saved = charseq.load(tmp_path / "a.npz").training["wall_time"]
    from charseq.runs.settings import format_duration

    assert f"after {format_duration(saved)} of training" in result.message
    again = run_cli("train", "--resume", tmp_path / "a.npz")
    assert f"after {format_duration(saved)} of training" in again.output  # the same, read back


def test_a_finished_time_limited_run_is_complete_on_resuming(tmp_path):
    out = tmp_path / "a.npz"
    run_cli("train", "--corpus", "alphabet", "--time-limit", "1s", "--out", out, "-q", "--threads", 1)
    before = out.read_bytes()
    result = run_cli("train", "--resume", out, "--epochs", 100_000)
    assert "the run is complete: its time limit (1s) ended it after " in result.output
    assert "a resumed run keeps its time limit, so to train longer, start a run with a longer --time-limit; nothing " \
           "was written" in result.output
    assert out.read_bytes() == before


def test_the_progress_bar_counts_down_the_time_then_the_planned_steps(tmp_path):
    result = run_cli("train", "--corpus", "alphabet", "--time-limit", "2s", "--progress", "--out", tmp_path / "a.npz",
                     "--threads", 1)
    assert "00:02 of the time limit left" in result.stderr  # before the plan: the budget, in seconds
    assert "step/s" in result.stderr  # then the steps to the planned one


def test_a_callback_sees_the_plan_and_the_time_spent(tmp_path):
    class Looks:
        def __init__(self):
            self.seen = []

        @hookimpl
        def on_step_end(self, trainer, step):
            self.seen.append((step, trainer.planned_steps, trainer.wall_time))

    looks = Looks()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # both are the context's own
        Run.start("alphabet", out=tmp_path / "a.npz", time_limit=1, extra_callbacks=[looks]).fit()
    plans = {planned for _, planned, _ in looks.seen}
    assert None in plans and len(plans) == 2  # none while measuring, then one plan, kept
    times = [spent for _, _, spent in looks.seen]
    assert times == sorted(times) and 0.8 < times[-1] < 1 + MARGIN


@pytest.mark.parametrize("change, refused", [
    ({"planned_steps": -1}, "planned_steps"),
    ({"planned_steps": "soon"}, "planned_steps"),
    ({"time_up": "yes"}, "time_up"),
    ({"planned_steps": 50}, "has a time limit's plan, but its run has no time limit"),
    ({"planned_steps": 0, "time_limit": 5}, "planned to end at step 0, before its step 30"),
    ({"planned_steps": 29, "time_limit": 5}, "planned to end at step 29, before its step 30"),
])
def test_a_checkpoint_edited_to_claim_a_plan_is_refused_in_one_line(tmp_path, change, refused):
    out = tmp_path / "a.npz"
    run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", out, "-q")
    def edit(metadata):
        metadata["run"]["config"]["time_limit"] = change.get("time_limit", 0.0)
        metadata["training"].update({key: value for key, value in change.items() if key != "time_limit"})

    resign(out, edit)
    result = run_cli("train", "--resume", out, "--corpus", "alphabet", "--out", out, ok=False)
    assert result.exit_code == 2 and refused in result.output and len(result.output.strip().splitlines()) == 1


def test_old_checkpoints_load_and_resume_without_a_time_limit():
    from pathlib import Path

    old = charseq.load(Path(__file__).parents[1] / "fixtures" / "play-0.3.0.npz")
    assert old.config["time_limit"] == 0.0  # the run as it was: no time limit


@pytest.mark.parametrize("seconds", [4e-13, 1e-7, 0.004, 0.25, 2.5, 9.94, 12.3, 59.9, 61, 5400, 5401, 90061, 1e17])
def test_a_duration_as_said_reads_back(seconds):
    from charseq.runs.settings import MAX_DURATION, format_duration, parse_duration

    said = format_duration(seconds)
    assert "e" not in said and re.fullmatch(r"([0-9]+h)?([0-9]+m)?([0-9.]+s)?", said)
    if seconds <= MAX_DURATION:
        assert parse_duration(said) == pytest.approx(seconds, rel=0.05)


@pytest.mark.parametrize("first, last, every, expected", [
    (0, 10, 0, 3),   # epoch ends at 4 and 8, and where it stops part way through the third
    (0, 8, 0, 2),    # two epoch ends, the last one where it stops
    (0, 10, 3, 6),   # and every 3 steps between: 3, 4, 6, 8, 9, and 10 where it stops
    (0, 9, 3, 5),    # 3, 4, 6, 8, 9: the one due at 9 is where it stops
    (0, 12, 3, 6),   # 3, 4, 6, 8, 9, and 12, an epoch's end and due: one
    (5, 5, 0, 0),
    (5, 9, 0, 2),    # from step 5: the epoch's end at 8, and 9
])
def test_the_plan_counts_every_evaluation_the_trainer_makes(first, last, every, expected):
    assert budget.evaluations(first, last, 4, every) == expected


def test_the_plan_fits_the_steps_and_evaluations_in_the_time_left():
    pace = budget.Pace(step_seconds=0.01, evaluation_seconds=0.5)
    last = budget.plan(0, 10.0, pace, steps_per_epoch=100, eval_every=0)
    cost = last * 0.01 + budget.evaluations(0, last, 100, 0) * 0.5
    assert cost <= 10.0 < cost + 0.01 + 0.5  # one more step (or its evaluation) would not fit
    assert budget.plan(7, 0.0, pace, 100, 0) == 7 and budget.plan(7, -1.0, pace, 100, 0) == 7
    assert np.isclose(budget.plan(0, 10.0, budget.Pace(0.01, 0.0), 100, 0), 1000, atol=1)
