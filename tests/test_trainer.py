import numpy as np
import pytest

from charseq import CharseqError, Corpus, TrainConfig, Trainer, UsageError, VanillaRNN, hookimpl
from charseq.model import PARAM_NAMES

TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def _trainer(callbacks=(), text=TEXT, **settings):
    corpus = Corpus.from_text("fox", text)
    config = TrainConfig(**{"hidden_size": 16, "seq_len": 8, "batch_size": 8, "epochs": 3, "lr": 0.5, **settings})
    model = VanillaRNN(len(corpus.vocab), config.hidden_size, seed=config.seed)
    return Trainer(model, corpus, config, callbacks)


class Recorder:
    """A callback that writes down every hook call it receives."""

    def __init__(self, stop_after_epoch=None):
        self.calls = []
        self.stop_after_epoch = stop_after_epoch

    @hookimpl
    def on_train_begin(self, trainer):
        self.calls.append(("begin",))

    @hookimpl
    def on_step_end(self, trainer, step, loss):
        self.calls.append(("step", step))

    @hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        self.calls.append(("epoch", epoch, metrics["loss"]))
        if epoch == self.stop_after_epoch:
            trainer.stop_training = True

    @hookimpl
    def on_train_end(self, trainer, metrics):
        self.calls.append(("end", metrics["epoch"]))


def test_training_lowers_the_loss():
    trainer = _trainer(epochs=8)
    trainer.fit()
    losses = [m["loss"] for m in trainer.history]
    assert losses[-1] < 0.7 * losses[0]


def test_callbacks_are_called_in_order_with_metrics():
    recorder = Recorder()
    trainer = _trainer([recorder])
    trainer.fit()
    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert [c[1] for c in recorder.calls if c[0] == "epoch"] == [1, 2, 3]
    steps = [c[1] for c in recorder.calls if c[0] == "step"]
    assert steps == list(range(1, trainer.step + 1)) and trainer.step == 3 * trainer.steps_per_epoch


def test_a_callback_can_stop_training():
    recorder = Recorder(stop_after_epoch=2)
    trainer = _trainer([recorder], epochs=10)
    metrics = trainer.fit()
    assert trainer.epoch == 2 and metrics["epoch"] == 2
    assert recorder.calls[-1] == ("end", 2)


def test_a_callback_can_stop_training_mid_epoch():
    class StopAtStep:
        @hookimpl
        def on_step_end(self, trainer, step, loss):
            self.last_loss = loss
            if step == 3:
                trainer.stop_training = True

    stopper = StopAtStep()
    trainer = _trainer([stopper], epochs=10)
    metrics = trainer.fit()
    assert trainer.step == 3 < trainer.steps_per_epoch
    assert metrics["epoch"] == 1 and metrics["loss"] > stopper.last_loss  # the mean of 3 falling losses


def test_same_seed_gives_identical_weights():
    a, b = _trainer(seed=7), _trainer(seed=7)
    a.fit()
    b.fit()
    assert all(np.array_equal(a.model.params[n], b.model.params[n]) for n in PARAM_NAMES)


def test_sgd_update_clips_each_element():
    trainer = _trainer(lr=1.0, clip=0.5)
    before = {n: v.copy() for n, v in trainer.model.params.items()}
    flat, grads = trainer.model.gradient_buffer()
    flat[...] = 3.0
    grads["c"][0] = -0.25
    trainer._sgd_update(flat)
    assert np.allclose(trainer.model.params["W"], before["W"] - 0.5)
    assert trainer.model.params["c"][0] == pytest.approx(before["c"][0] + 0.25)


def test_warmup_raises_the_learning_rate_linearly():
    config = TrainConfig(lr=2.0, warmup=4)
    assert [config.lr_at(step) for step in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert TrainConfig(lr=2.0).lr_at(0) == 2.0


def test_misspelt_callback_hook_is_an_error_naming_the_callback():
    class Typo:
        @hookimpl
        def on_epoch_ends(self, trainer, epoch, metrics):
            pass

    with pytest.raises(CharseqError, match="Typo"):
        _trainer([Typo()])


def test_batch_larger_than_the_data_is_a_usage_error():
    with pytest.raises(UsageError, match="batch size 1000"):
        _trainer(batch_size=1000).fit()


def test_text_shorter_than_one_window_is_a_usage_error():
    with pytest.raises(UsageError, match="fewer than one window"):
        _trainer(text="tiny", seq_len=8).fit()


@pytest.mark.parametrize("field,value", [("hidden_size", 0), ("seq_len", -1), ("batch_size", 0),
                                         ("epochs", 0), ("lr", 0.0), ("lr", float("nan")), ("clip", 0.0)])
def test_config_refuses_nonsense(field, value):
    with pytest.raises(UsageError, match=field.replace("_", "-") if "_" in field else field):
        TrainConfig(**{field: value})


def test_divergence_stops_with_a_message_naming_the_step():
    trainer = _trainer(lr=3e38, clip=3e38, epochs=50)  # float32 weights overflow to inf, then NaN
    with pytest.raises(CharseqError, match=r"diverged at step \d+.*lower --lr"):
        trainer.fit()


def test_corpus_defaults_sit_between_generic_defaults_and_overrides():
    corpus = Corpus.from_text("t", TEXT, defaults={"hidden_size": 11, "lr": 0.2})
    config = TrainConfig.for_corpus(corpus, lr=0.3, seq_len=None)
    assert (config.hidden_size, config.lr, config.seq_len) == (11, 0.3, TrainConfig().seq_len)
