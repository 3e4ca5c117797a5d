"""What a callback is given (charseq.TrainingContext) and the bases it may build on
(charseq.Callback, charseq.MonitorCallback); a callback written against the earlier guide,
reading the trainer's other attributes, still works, with a DeprecationWarning."""

from __future__ import annotations

import warnings

import pytest

import charseq
from charseq import Callback, MonitorCallback, Run, TrainingContext, UsageError, hookimpl


class StopAtEpoch(Callback):
    """Only on_epoch_end, no @hookimpl: the base supplies the rest."""

    def __init__(self, epoch: int):
        self.epoch, self.seen = epoch, []

    def on_epoch_end(self, trainer, epoch, metrics):
        self.seen.append((type(trainer), epoch, trainer.epoch, sorted(metrics)[:2]))
        if epoch == self.epoch:
            trainer.stop_training = True


def test_a_callback_defines_only_the_hooks_it_needs_and_stops_training(tmp_path):
    stopper = StopAtEpoch(2)
    run = Run.start("alphabet", out=tmp_path / "a.npz", epochs=6, hidden_size=8, extra_callbacks=[stopper])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # nothing it uses is deprecated
        result = run.fit()
    assert [seen[1:3] for seen in stopper.seen] == [(1, 1), (2, 2)]
    assert all(seen[0] is TrainingContext for seen in stopper.seen)
    assert result.metrics["epoch"] == 2
    assert not run.trainer.callbacks.implement("on_step_end")  # the base's no-op is no hook: no call per step


class Looks(Callback):
    def on_train_begin(self, trainer):
        self.looked = {name: getattr(trainer, name) for name in (
            "model", "corpus", "config", "epoch", "step", "step_in_epoch", "steps_per_epoch", "history",
            "metric_names", "out", "run", "stop_training", "weights_from")}


def test_the_context_holds_what_the_guide_promises(tmp_path):
    looks = Looks()
    run = Run.start("alphabet", out=tmp_path / "a.npz", epochs=1, hidden_size=8, extra_callbacks=[looks])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        run.fit()
    seen = looks.looked
    assert seen["model"] is run.model and seen["config"] is run.config and seen["out"] == run.out
    assert seen["run"]["id"] == run.spec.to_dict()["id"] and seen["stop_training"] is False
    assert "loss" in seen["metric_names"] and seen["step"] == 0


class OldStyle:
    """A callback of the earlier guide: @hookimpl, and a look at the trainer's internals."""

    @hookimpl
    def on_train_begin(self, trainer):
        self.optimizer = trainer.optimizer


def test_a_callback_reading_the_trainers_internals_still_works_with_a_deprecation_warning(tmp_path):
    old = OldStyle()
    run = Run.start("alphabet", out=tmp_path / "a.npz", epochs=1, hidden_size=8, extra_callbacks=[old])
    with pytest.warns(DeprecationWarning, match="trainer.optimizer is not part of what a callback is given"):
        run.fit()
    assert old.optimizer is run.trainer.optimizer


class BestLoss(MonitorCallback):
    who = "best-loss"

    def __init__(self, monitor=None):
        super().__init__(monitor, mode="min")
        self.bests = []

    def on_train_begin(self, trainer):
        self.watch(trainer)

    def on_epoch_end(self, trainer, epoch, metrics):
        if self.improved(metrics[self.watched]):
            self.best = metrics[self.watched]
            self.bests.append(epoch)


def test_a_monitor_callback_watches_one_metric_and_refuses_one_the_run_lacks(tmp_path):
    best = BestLoss()
    Run.start("alphabet", out=tmp_path / "a.npz", epochs=4, hidden_size=8, extra_callbacks=[best]).fit()
    assert best.watched == "loss" and best.bests[0] == 1 and best.best < float("inf")
    wrong = Run.start("alphabet", out=tmp_path / "b.npz", epochs=4, hidden_size=8, extra_callbacks=[BestLoss("nope")])
    with pytest.raises(charseq.RunFailed, match="best-loss cannot monitor 'nope'"):
        wrong.fit()
    with pytest.raises(UsageError, match="mode must be 'min' or 'max'"):
        MonitorCallback(mode="lowest")


class Exits(Callback):
    def __init__(self, error: BaseException):
        self.error = error

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == 2:
            raise self.error


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
def test_a_callback_that_exits_gets_the_run_saved_first(tmp_path, error):
    run = Run.start("alphabet", out=tmp_path / "a.npz", epochs=4, hidden_size=8, extra_callbacks=[Exits(error)])
    with pytest.raises(charseq.RunFailed, match=f"failed in on_epoch_end: {type(error).__name__}") as failed:
        run.fit()
    assert failed.value.saved is not None and charseq.load(failed.value.saved).progress["epoch"] == 2


class Meddles(Callback):
    def on_train_begin(self, trainer):
        trainer.epoch = 99


def test_what_the_context_promises_is_read_only_to_a_callback(tmp_path):
    run = Run.start("alphabet", out=tmp_path / "a.npz", epochs=2, hidden_size=8, extra_callbacks=[Meddles()])
    with pytest.raises(charseq.RunFailed, match="trainer.epoch is read-only for a callback"):
        run.fit()
    assert run.trainer.epoch == 0


class Misspelt(Callback):
    def on_epoch_ends(self, trainer, epoch, metrics):
        pass


def test_a_misspelt_hook_of_a_callback_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"on_epoch_ends\(\) is not a callback hook"):
        Run.start("alphabet", out=tmp_path / "a.npz", epochs=2, hidden_size=8, extra_callbacks=[Misspelt()])


PEEKING_PLUGIN = '''
from charseq import Callback, hookimpl


class Peeks(Callback):
    """Reads what is not promised to it."""

    def on_train_begin(self, trainer):
        trainer.optimizer


@hookimpl
def register_callbacks(register):
    register("peeks", Peeks)
'''


def test_the_command_line_shows_a_callbacks_deprecation(plugin_site, tmp_path, monkeypatch):
    from conftest import install_fake_distribution, run_cli

    install_fake_distribution(plugin_site, "throwaway-peeks", PEEKING_PLUGIN, "[charseq]\npeeks = throwaway_peeks\n")
    monkeypatch.chdir(tmp_path)
    trained = run_cli("train", "--corpus", "alphabet", "--epochs", 1, "--hidden-size", 8, "--callback", "peeks", "-q")
    assert "charseq: warning: trainer.optimizer is not part of what a callback is given" in trained.stderr
