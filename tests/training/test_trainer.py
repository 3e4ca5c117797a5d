import numpy as np
import pytest

from charseq import CharseqError, Corpus, TrainConfig, Trainer, UsageError, VanillaRNN, Vocabulary, hookimpl
from charseq.models.rnn import PARAM_NAMES

TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def _trainer(callbacks=(), text=TEXT, **settings):
    corpus = Corpus.from_text("fox", text)
    config = TrainConfig(**{"hidden_size": 16, "seq_len": 8, "batch_size": 8, "epochs": 3, "optimizer": "sgd",
                            "lr": 0.5, "clip": 5.0, "clip_norm": 0.0, "val_fraction": 0.0, "schedule": "constant",
                            "input_lr_scale": 1.0, **settings})
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


def _step_with_gradient(trainer, fill, monkeypatch):
    """One train_step in which the model reports the gradient `fill` sets."""

    def fixed(x, y, h0=None, out=None, **options):
        fill(out)
        return 1.0, out, np.zeros((x.shape[0], trainer.model.hidden_size), np.float32)

    monkeypatch.setattr(trainer.model, "loss_and_grads", fixed)
    before = trainer.model.flat.copy()
    trainer.train_step(np.zeros((8, 8), int), np.zeros((8, 8), int))
    return before - trainer.model.flat  # lr * the gradient after clipping


def test_element_wise_clipping(monkeypatch):
    def fill(grads):
        for g in grads.values():
            g[...] = 3.0
        grads["c"][0] = -0.25

    step = _step_with_gradient(_trainer(lr=1.0, clip=0.5), fill, monkeypatch)
    assert np.count_nonzero(np.isclose(step, -0.25)) == 1 and np.count_nonzero(np.isclose(step, 0.5)) == step.size - 1


def test_global_norm_clipping_keeps_the_direction(monkeypatch):
    def fill(grads):
        for i, g in enumerate(grads.values()):
            g[...] = i + 1.0

    trainer = _trainer(lr=1.0, clip=0.0, clip_norm=2.0)
    flat, grads = trainer.model.gradient_buffer()
    fill(grads)
    step = _step_with_gradient(trainer, fill, monkeypatch)
    np.testing.assert_allclose(step, flat * 2.0 / np.linalg.norm(flat), rtol=1e-5)
    small = _step_with_gradient(_trainer(lr=1.0, clip=0.0, clip_norm=1e9), fill, monkeypatch)
    np.testing.assert_allclose(small, flat, rtol=1e-6)  # under the norm: untouched


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "rmsprop", "adam"])
def test_input_weights_take_input_lr_scale_times_larger_steps(optimizer, monkeypatch):
    def fill(grads):
        for i, g in enumerate(grads.values()):
            g[...] = 0.1 * (i + 1)

    plain = _step_with_gradient(_trainer(optimizer=optimizer, lr=0.01, clip=0.0), fill, monkeypatch)
    scaled_trainer = _trainer(optimizer=optimizer, lr=0.01, clip=0.0, input_lr_scale=3.0)
    scaled = _step_with_gradient(scaled_trainer, fill, monkeypatch)
    from charseq.models.base import flat_slice

    U = flat_slice(scaled_trainer.model.flat, scaled_trainer.model.params["U"])
    rest = np.ones(plain.size, bool)
    rest[U] = False
    np.testing.assert_allclose(scaled[U], 3.0 * plain[U], rtol=1e-3)  # float32 differences of ~0.5
    np.testing.assert_array_equal(scaled[rest], plain[rest])
    assert np.all(plain != 0)


def test_warmup_raises_the_learning_rate_linearly():
    config = TrainConfig(lr=2.0, warmup=4, schedule="constant")
    assert [config.lr_at(step) for step in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert TrainConfig(lr=2.0, schedule="constant").lr_at(0) == 2.0


def test_misspelt_callback_hook_is_an_error_naming_the_callback():
    class Typo:
        @hookimpl
        def on_epoch_ends(self, trainer, epoch, metrics):
            pass

    with pytest.raises(CharseqError, match="Typo"):
        _trainer([Typo()])


def test_batch_larger_than_the_data_is_a_usage_error():
    with pytest.raises(UsageError, match="too short for 1000 streams"):
        _trainer(batch_size=1000)
    with pytest.raises(UsageError, match="batch size 301 is larger than the 300 training windows"):
        corpus = Corpus("cycle", Vocabulary("ab"), np.array([0, 1], np.uint8), random_windows=300)
        Trainer(VanillaRNN(2, 4), corpus, TrainConfig(batch_size=301, seq_len=3))


def test_text_shorter_than_one_window_is_a_usage_error():
    with pytest.raises(UsageError, match="too short"):
        _trainer(text="tiny", seq_len=8, batch_size=1)


@pytest.mark.parametrize("field,value", [("hidden_size", 0), ("seq_len", -1), ("batch_size", 0), ("epochs", 0),
                                         ("lr", 0.0), ("lr", float("nan")), ("clip", -1.0), ("clip_norm", float("inf")),
                                         ("optimizer", "sgdd"), ("schedule", "linear"), ("val_fraction", 1.0),
                                         ("lr_decay", 0.0), ("eval_every", -1), ("dropout", 1.0), ("dropout", -0.1),
                                         ("input_lr_scale", 0.0), ("max_val_chars", -1)])
def test_config_refuses_nonsense(field, value):
    with pytest.raises(UsageError, match=rf"\b{field}\b"):  # in the API's words: the keyword
        TrainConfig(**{field: value})


def test_divergence_stops_with_a_message_naming_the_step():
    trainer = _trainer(lr=3e38, clip=3e38, epochs=50)  # float32 weights overflow to inf, then NaN
    with pytest.raises(CharseqError, match=r"diverged at step \d+.*lower lr=…"):
        trainer.fit()


def test_corpus_defaults_sit_between_generic_defaults_and_overrides():
    corpus = Corpus.from_text("t", TEXT, defaults={"hidden_size": 11, "lr": 0.2})
    config = TrainConfig.for_corpus(corpus, lr=0.3, seq_len=None)
    assert (config.hidden_size, config.lr, config.seq_len) == (11, 0.3, TrainConfig().seq_len)


class StateRecorder:
    """Wraps a model's loss_and_grads to record each step's x and h0."""

    def __init__(self, trainer, monkeypatch):
        self.calls = []
        original = trainer.model.loss_and_grads

        def record(x, y, h0=None, out=None, **options):
            result = original(x, y, h0, out, **options)
            self.calls.append((x.copy(), y.copy(), None if h0 is None else h0.copy(), result[2]))
            return result

        monkeypatch.setattr(trainer.model, "loss_and_grads", record)


def test_text_streams_carry_the_state_and_reset_each_epoch(monkeypatch):
    text = "".join(chr(97 + i % 26) for i in range(2000))
    trainer = _trainer(text=text, batch_size=4, seq_len=10, epochs=2)
    recorder = StateRecorder(trainer, monkeypatch)
    trainer.fit()
    per_epoch = trainer.steps_per_epoch
    assert len(recorder.calls) == 2 * per_epoch and per_epoch == (2000 - 1) // 4 // 10
    for epoch in range(2):
        calls = recorder.calls[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert calls[0][2] is None  # a fresh state at each epoch
        for previous, current in zip(calls, calls[1:]):
            np.testing.assert_array_equal(current[2], previous[3])  # h0 is the last step's h
            # each stream goes on where it left off: consecutive text
            np.testing.assert_array_equal(current[0][:, 0], previous[1][:, -1])
        x0 = np.concatenate([c[0] for c in calls], axis=1)
        y0 = np.concatenate([c[1] for c in calls], axis=1)
        np.testing.assert_array_equal(x0[:, 1:], y0[:, :-1])  # targets are the inputs shifted by one
        stream_starts = [trainer.corpus.vocab.decode(x0[b, :3]) for b in range(4)]
        assert len(set(stream_starts)) > 1  # four different places in the text


def test_validation_split_is_the_held_out_end_of_the_text():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    trainer = _trainer(text=text, val_fraction=0.1)
    train_ids = trainer.batches.train_ids
    assert len(trainer.val_ids) == 100 and len(train_ids) == 900
    assert np.array_equal(np.concatenate([train_ids, trainer.val_ids]), trainer.corpus.ids)
    # training never reads past its part: the last target of an epoch lies inside train_ids
    assert trainer.steps_per_epoch * trainer.config.seq_len * trainer.config.batch_size < len(train_ids)


def test_the_held_out_part_is_capped():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    trainer = _trainer(text=text, val_fraction=0.1, max_val_chars=40)
    assert len(trainer.val_ids) == 40 and len(trainer.batches.train_ids) == 960
    assert np.array_equal(trainer.val_ids, trainer.corpus.ids[-40:])


def test_metrics_hold_train_and_validation_loss_in_three_units():
    trainer = _trainer(val_fraction=0.2, epochs=2)
    metrics = trainer.fit()
    import math

    for prefix in ("", "val_"):
        loss = metrics[f"{prefix}loss"]
        assert metrics[f"{prefix}bpc"] == pytest.approx(loss / math.log(2))
        assert metrics[f"{prefix}perplexity"] == pytest.approx(math.exp(loss))
    assert metrics["val_loss"] == pytest.approx(trainer.evaluate(trainer.val_ids))
    assert metrics["chars_per_sec"] > 0 and metrics["lr"] == 0.5 and metrics["step"] == trainer.step


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1.0), ("adagrad", 0.1), ("rmsprop", 0.005), ("adam", 0.01)])
def test_each_optimizer_lowers_the_loss(optimizer, lr):
    trainer = _trainer(optimizer=optimizer, lr=lr, clip=0.0, clip_norm=5.0, epochs=8, val_fraction=0.1)
    before = trainer.evaluate(trainer.val_ids)
    trainer.fit()
    assert trainer.history[-1]["val_loss"] < 0.8 * before
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_adam_matches_the_textbook_update():
    from charseq.training.optimizers import Adam

    rng = np.random.default_rng(0)
    params, grads = rng.normal(size=5), [rng.normal(size=5) for _ in range(3)]
    adam, p = Adam(5, np.float64), params.copy()
    m = v = np.zeros(5)
    expected = params.copy()
    for t, g in enumerate(grads, start=1):
        adam.step(p, g.copy(), 0.01)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-10)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "rmsprop", "adam"])
def test_weight_decay_shrinks_the_matrices_alone_apart_from_the_gradient(optimizer):
    """Every parameter of two or more axes (matrices, embeddings) shrinks by lr * decay each
    step before the rule's own step; biases and norms do not."""
    from charseq import get_model

    corpus = Corpus.from_text("fox", "the quick brown fox jumps over the lazy dog. " * 20)
    for spec in ("gru:layers=2", "transformer:layers=1,heads=2,context=8"):
        model = get_model(spec, len(corpus.vocab), 8)
        trainer = Trainer(model, corpus, TrainConfig(seq_len=8, batch_size=4, optimizer=optimizer,
                                                     weight_decay=0.5, lr=0.1))
        before = {name: value.copy() for name, value in model.params.items()}
        trainer.optimizer.step(model.flat, np.zeros_like(model.flat), 0.1)  # no gradient: the decay alone
        for name, value in model.params.items():
            factor = 0.95 if value.ndim >= 2 else 1.0
            np.testing.assert_allclose(value, factor * before[name], rtol=1e-6, err_msg=f"{spec} {name}")
        assert any(value.ndim == 1 for value in before.values())


def test_weight_decay_is_refused_where_it_would_flip_the_weights():
    with pytest.raises(UsageError, match=r"weight_decay times lr must be below 1 .* got 0.5 x 2"):
        TrainConfig(weight_decay=0.5, lr=2.0)
    with pytest.raises(UsageError, match="weight_decay must be 0 or more"):
        TrainConfig(weight_decay=-0.1)


def test_learning_rate_schedules():
    step = TrainConfig(lr=1.0, schedule="step", lr_decay=0.5, lr_decay_every=2, epochs=10)
    assert [step.lr_at(s, steps_per_epoch=3) for s in (0, 5, 6, 11, 12)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = TrainConfig(lr=1.0, schedule="cosine", min_lr=0.1, epochs=2, warmup=2)
    rates = [cosine.lr_at(s, steps_per_epoch=5) for s in range(10)]
    assert rates[:2] == [0.5, 1.0] and rates[2] == pytest.approx(1.0)
    assert rates[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(rates[2:], rates[3:])) and cosine.lr_at(10, 5) == pytest.approx(0.1)


def test_evaluation_every_n_steps_and_at_each_epoch_end():
    class Evaluations:
        def __init__(self):
            self.steps = []

        @hookimpl
        def on_evaluation(self, trainer, metrics):
            self.steps.append(metrics["step"])

    seen = Evaluations()
    trainer = _trainer([seen], eval_every=4, val_fraction=0.1, epochs=2)
    trainer.fit()
    per_epoch = trainer.steps_per_epoch
    expected = sorted(set(list(range(4, 2 * per_epoch + 1, 4)) + [per_epoch, 2 * per_epoch]))
    assert seen.steps == expected
    assert [h["step"] for h in trainer.history] == expected


class Named:
    """Writes its name and the hook into a shared log."""

    def __init__(self, name, log, stop_at_epoch=None):
        self.name, self.log, self.stop_at_epoch = name, log, stop_at_epoch

    @hookimpl
    def on_train_begin(self, trainer):
        self.log.append((self.name, "begin"))

    @hookimpl
    def on_step_end(self, step):
        self.log.append((self.name, "step"))

    @hookimpl
    def on_evaluation(self, metrics):
        self.log.append((self.name, "evaluation"))

    @hookimpl
    def on_epoch_end(self, trainer, epoch):
        self.log.append((self.name, "epoch"))
        if epoch == self.stop_at_epoch:
            trainer.stop_training = True

    @hookimpl
    def on_train_end(self):
        self.log.append((self.name, "end"))


def test_callbacks_run_in_the_order_given_for_every_hook():
    """Keras's order, where pluggy would call the last registered first."""
    log = []
    _trainer([Named("a", log), Named("b", log), Named("c", log)], epochs=2).fit()
    for hook in ("begin", "step", "evaluation", "epoch", "end"):
        names = [name for name, seen in log if seen == hook]
        assert names == ["a", "b", "c"] * (len(names) // 3) and names, hook


def test_the_callback_that_stopped_training_is_known():
    log = []
    trainer = _trainer([Named("a", log), Named("b", log, stop_at_epoch=2)], epochs=5)
    trainer.fit()
    assert trainer.epoch == 2 and trainer.stop_training and trainer.stopped_by == "Named-2"


def test_a_hook_method_with_an_unknown_argument_or_name_is_refused():
    class TypoArgument:
        @hookimpl
        def on_epoch_end(self, trainer, epoch, logs):
            pass

    class TypoName:
        @hookimpl
        def on_epoch_ends(self, trainer):
            pass

    with pytest.raises(UsageError, match=r"on_epoch_end\(\) takes trainer, epoch, logs; it may take any of trainer, "
                                         r"epoch, metrics"):
        _trainer([TypoArgument()])
    with pytest.raises(UsageError, match=r"on_epoch_ends\(\) is marked @hookimpl but is not a callback hook"):
        _trainer([TypoName()])
