"""Resuming is exact: a run stopped anywhere, saved to disk and resumed in a new Trainer
ends bit for bit where the uninterrupted run ends."""

import signal

import numpy as np
import pytest

from charseq import Corpus, TrainConfig, Trainer, UsageError, VanillaRNN, checkpoint, hookimpl
from charseq.model import PARAM_NAMES
from charseq.optimizers import OPTIMIZERS
from charseq.plugins.callbacks import EarlyStopping, ModelCheckpoint

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(60))
LR = {"sgd": 0.5, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01}


def _text_corpus():
    return Corpus.from_text("fox", TEXT)


def _windows_corpus():
    return Corpus.from_text("cycle", "ABCDEFGHIJ" * 3, random_windows=60)


def _trainer(corpus, callbacks=(), **settings):
    config = TrainConfig(**{"hidden_size": 12, "seq_len": 8, "batch_size": 4, "epochs": 4, "optimizer": "adam",
                            "lr": 0.01, "clip_norm": 5.0, "val_fraction": 0.1, "schedule": "cosine", "warmup": 3,
                            "dropout": 0.2, **settings})
    model = VanillaRNN(len(corpus.vocab), config.hidden_size, seed=config.seed)
    return Trainer(model, corpus, config, list(callbacks))


class InterruptAt:
    """Interrupts the run, as a signal would, once `step` steps are done."""

    def __init__(self, step):
        self.step = step

    @hookimpl
    def on_step_end(self, trainer, step, loss):
        if step == self.step:
            trainer.interrupted = signal.SIGINT


def _resumed(tmp_path, make_corpus, stop_at, settings, callbacks=lambda: ()):
    """Run until `stop_at` steps, save, load, and finish the run in a fresh trainer."""
    first = _trainer(make_corpus(), [*callbacks(), InterruptAt(stop_at)], **settings)
    first.fit()
    assert first.interrupted is not None and first.step == stop_at
    path = checkpoint.save(tmp_path / "stopped.npz", first.to_checkpoint())
    second = _trainer(make_corpus(), callbacks(), **settings)
    second.restore(checkpoint.load(path))
    second.fit()
    return second


def _assert_identical(a, b):
    for name in PARAM_NAMES:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
    for name in a.optimizer.state:
        assert np.array_equal(a.optimizer.state[name], b.optimizer.state[name]), name
    assert (a.step, a.epoch) == (b.step, b.epoch)
    assert [(h["step"], h["loss"], h.get("val_loss")) for h in a.history] == \
        [(h["step"], h["loss"], h.get("val_loss")) for h in b.history]


@pytest.mark.parametrize("make_corpus", [_text_corpus, _windows_corpus], ids=["streams", "random-windows"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("where", ["epoch-boundary", "mid-epoch"])
def test_resumed_run_ends_bit_for_bit_equal(tmp_path, optimizer, make_corpus, where):
    settings = {"optimizer": optimizer, "lr": LR[optimizer]}
    whole = _trainer(make_corpus(), **settings)
    whole.fit()
    per_epoch = whole.steps_per_epoch
    stop_at = 2 * per_epoch if where == "epoch-boundary" else per_epoch + per_epoch // 2
    _assert_identical(whole, _resumed(tmp_path, make_corpus, stop_at, settings))


def test_an_unresumed_trainer_would_not_be_equal(tmp_path):
    """The comparison above can fail: starting the second half afresh (new optimizer state
    and random state) ends elsewhere."""
    whole = _trainer(_text_corpus())
    whole.fit()
    first = _trainer(_text_corpus(), [InterruptAt(whole.steps_per_epoch)])
    first.fit()
    second = _trainer(_text_corpus())
    second.model.params["W"] = first.model.params["W"]  # the weights alone, without the rest of the state
    second.fit()
    assert not np.array_equal(whole.model.params["W"], second.model.params["W"])


def test_early_stopping_state_carries_over(tmp_path):
    settings = {"epochs": 12, "lr": 0.05}
    stopper = lambda: [EarlyStopping(patience=1, min_delta=0.5, restore_best_weights=True)]  # noqa: E731
    whole = _trainer(_text_corpus(), stopper(), **settings)
    whole.fit()
    assert whole.epoch < 12  # it did stop early, at the epoch the resumed run must also stop at
    resumed = _resumed(tmp_path, _text_corpus, whole.steps_per_epoch * 2, settings, stopper)
    _assert_identical(whole, resumed)


def test_keep_last_checkpoints_survive_a_resume(tmp_path):
    template = str(tmp_path / "ckpt-{epoch:02d}.npz")
    saver = lambda: [ModelCheckpoint(template, keep_last=2)]  # noqa: E731
    _resumed(tmp_path, _text_corpus, 9, {"epochs": 5}, saver)  # stopped in epoch 2, after one save
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.npz")) == ["ckpt-04.npz", "ckpt-05.npz"]


def test_final_checkpoint_extends_with_more_epochs(tmp_path):
    whole = _trainer(_text_corpus(), epochs=4, schedule="constant")
    whole.fit()
    short = _trainer(_text_corpus(), epochs=2, schedule="constant")
    short.fit()
    path = checkpoint.save(tmp_path / "short.npz", short.to_checkpoint())
    longer = _trainer(_text_corpus(), epochs=4, schedule="constant")
    longer.restore(checkpoint.load(path))
    longer.fit()
    _assert_identical(whole, longer)


def test_resume_refuses_another_corpus(tmp_path):
    trainer = _trainer(_text_corpus(), epochs=1)
    trainer.fit()
    path = checkpoint.save(tmp_path / "m.npz", trainer.to_checkpoint())
    other = _trainer(Corpus.from_text("fox", TEXT + TEXT[:100]), epochs=2)
    with pytest.raises(UsageError, match="same text"):
        other.restore(checkpoint.load(path))
    different = _trainer(Corpus.from_text("other", TEXT.upper()), epochs=2)
    with pytest.raises(UsageError, match="vocabulary"):
        different.restore(checkpoint.load(path))


def test_the_metrics_file_continues_without_repeats(tmp_path):
    from charseq.plugins.callbacks import MetricsLog
    import json

    def steps(path):
        return [json.loads(line)["step"] for line in path.read_text().splitlines()]

    settings = {"eval_every": 5}
    whole = _trainer(_text_corpus(), [MetricsLog(tmp_path / "whole.jsonl")], **settings)
    whole.fit()
    log = lambda: [MetricsLog(tmp_path / "cut.jsonl")]  # noqa: E731
    first = _trainer(_text_corpus(), [*log(), InterruptAt(12)], **settings)
    first.fit()
    path = checkpoint.save(tmp_path / "cut.npz", first.to_checkpoint())
    with (tmp_path / "cut.jsonl").open("a") as f:  # a line a crashed run wrote after its last checkpoint
        f.write(json.dumps({"step": 14, "loss": 1.0}) + "\n")
    second = _trainer(_text_corpus(), log(), **settings)
    second.restore(checkpoint.load(path))
    second.fit()
    assert steps(tmp_path / "cut.jsonl") == steps(tmp_path / "whole.jsonl")
