import re

import pytest

import charseq
from charseq import Corpus, TrainConfig, Trainer, VanillaRNN, hookimpl
from charseq.training.callbacks import CallbackError
from charseq.plugins.callbacks import EarlyStopping, ModelCheckpoint


class ScriptedLoss:
    """Replaces each epoch's loss with the next scripted value and marks the weights with it,
    so a test can tell which epoch's weights the model ended with."""

    def __init__(self, losses):
        self.losses = list(losses)

    @hookimpl(tryfirst=True)
    def on_epoch_end(self, trainer, epoch, metrics):
        metrics["loss"] = self.losses[epoch - 1]
        trainer.model.params["c"][0] = epoch


def _run(losses, *callbacks, epochs=None):
    corpus = Corpus.from_text("t", "abcdefgh" * 20)
    config = TrainConfig(hidden_size=4, seq_len=4, batch_size=4, epochs=epochs or len(losses), lr=0.01,
                         val_fraction=0)
    trainer = Trainer(VanillaRNN(len(corpus.vocab), 4), corpus, config, [ScriptedLoss(losses), *callbacks])
    trainer.fit()
    return trainer


def test_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    trainer = _run([5, 4, 4.5, 4.2, 3, 2], stopper)
    assert trainer.epoch == 4 and stopper.stopped_epoch == 4 and stopper.best == 4 and stopper.best_epoch == 2


def test_patience_zero_stops_at_the_first_epoch_without_improvement():
    trainer = _run([5, 4, 4, 3], EarlyStopping(patience=0))
    assert trainer.epoch == 3


def test_min_delta_ignores_small_improvements():
    trainer = _run([5, 4.95, 4.9, 4.85, 1], EarlyStopping(patience=2, min_delta=0.2))
    assert trainer.epoch == 3


def test_restore_best_weights_puts_back_the_best_epoch():
    trainer = _run([5, 3, 4, 4.5, 1], EarlyStopping(patience=2, restore_best_weights=True))
    assert trainer.epoch == 4 and trainer.model.params["c"][0] == 2


def test_without_restore_the_last_weights_stay():
    trainer = _run([5, 3, 4, 4.5, 1], EarlyStopping(patience=2))
    assert trainer.model.params["c"][0] == 4


def test_mode_max_and_baseline():
    assert _run([1, 2, 3, 2, 2, 9], EarlyStopping(mode="max", patience=1)).epoch == 4
    assert _run([1, 2, 3, 2, 2, 9], EarlyStopping(mode="max", patience=2)).epoch == 5
    # Improving but never past the baseline: patience keeps counting through the
    # improvements, so the first epoch without one stops training (Keras semantics).
    assert _run([1, 2, 3, 4, 3.5, 3.6], EarlyStopping(mode="max", patience=2)).epoch == 6
    assert _run([1, 2, 3, 4, 3.5, 3.6], EarlyStopping(mode="max", patience=2, baseline=10)).epoch == 5


def test_unknown_monitor_is_a_usage_error_before_the_first_step():
    with pytest.raises(CallbackError, match="cannot monitor 'val_loss'") as raised:
        _run([1, 2], EarlyStopping(monitor="val_loss"))
    assert raised.value.exit_code == 2 and raised.value.hook == "on_train_begin"


def test_checkpoint_template_every_n_epochs(tmp_path):
    saver = ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{loss:.1f}.npz"), every=2)
    _run([5, 4, 3, 2, 1], saver)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-02-4.0.npz", "ckpt-04-2.0.npz"]
    loaded = charseq.load(tmp_path / "ckpt-04-2.0.npz")
    assert loaded.progress["epoch"] == 4 and loaded.model.params["c"][0] == 4


def test_checkpoint_save_best_only(tmp_path):
    saver = ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), save_best_only=True)
    _run([5, 3, 4, 6, 2.5, 7], saver)
    assert [p.name for p in saver.saved] == ["best-1.npz", "best-2.npz", "best-5.npz"]  # the epochs that improved
    assert charseq.load(tmp_path / "best-5.npz").model.params["c"][0] == 5


def test_keep_last_deletes_all_but_the_newest_files_it_saved(tmp_path):
    (tmp_path / "mine.npz").write_text("not the callback's")
    saver = ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"), keep_last=2)
    _run([5, 4, 3, 2, 1], saver)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-4.npz", "ckpt-5.npz", "mine.npz"]
    fixed = ModelCheckpoint(str(tmp_path / "one.npz"), keep_last=1)
    _run([5, 4, 3], fixed)
    assert (tmp_path / "one.npz").exists() and fixed.saved == [tmp_path / "one.npz"]


@pytest.mark.parametrize("template,words", [("ckpt-{nonsense}.npz", "uses {nonsense}, which this run does not have"),
                                            ("ckpt-{val_loss}.npz", "uses {val_loss}"),
                                            ("ckpt-{loss:03d}.npz", "malformed"),
                                            ("ckpt-{epoch.real.x}.npz", "malformed")])
def test_malformed_template_is_refused_before_training(tmp_path, template, words):
    with pytest.raises(CallbackError, match=re.escape(words)) as raised:
        _run([1, 2], ModelCheckpoint(str(tmp_path / template)))
    assert raised.value.hook == "on_train_begin" and list(tmp_path.iterdir()) == []


def test_force_replaces_another_runs_metrics_log_and_the_run_logs_on(tmp_path, monkeypatch):
    """--force is the user's word: the log of an earlier run at --metrics is replaced, and a
    resumed run goes on writing it."""
    import json

    from conftest import run_cli

    monkeypatch.chdir(tmp_path)
    run_cli("train", "--corpus", "alphabet", "--epochs", 3, "--out", "a.npz", "--metrics", "a.jsonl", "-q")
    first = {json.loads(line)["run"] for line in (tmp_path / "a.jsonl").read_text().splitlines()}
    again = run_cli("train", "--corpus", "alphabet", "--epochs", 2, "--out", "a.npz", "--metrics", "a.jsonl", "--force",
                    "-q")
    assert "cannot write metrics" not in again.stderr
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and not {line["run"] for line in lines} & first
    run_cli("train", "--resume", "a.npz", "--epochs", 4, "-q")
    assert [json.loads(line)["epoch"] for line in (tmp_path / "a.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
