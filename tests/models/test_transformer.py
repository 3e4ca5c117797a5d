"""The transformer: its gradients against float64 central differences, its stepper (the
key/value cache, sliding when the context is full, a state of rows) against the training
pass, and what charseq refuses of it. PyTorch parity is in test_torch_parity.py."""

import numpy as np
import pytest

import charseq
from gradients import central_differences
from charseq import Run, get_model
from charseq.data.corpus import Corpus
from charseq.decoding.generate import generate
from charseq.errors import CharseqWarning, UsageError
from charseq.models.base import Model, check_model
from charseq.models.transformer import Transformer

TEXT = "the quick brown fox jumps over the lazy dog. " * 30


def _model(layers=2, heads=2, context=6, V=7, E=8, dtype=np.float64, seed=1):
    """A transformer with every parameter (LayerNorms and biases too) moved from its start."""
    model = Transformer(V, E, seed=seed, dtype=dtype, layers=layers, heads=heads, context=context)
    rng = np.random.default_rng(seed)
    for value in model.params.values():
        value += rng.normal(0, 0.3, value.shape).astype(dtype)
    return model


def _numerical(model, x, y, dropout):
    return central_differences(
        lambda: model.loss_and_grads(x, y, dropout=dropout, rng=np.random.default_rng(9))[0], model.params)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("layers,heads,T", [(1, 1, 1), (2, 2, 5), (1, 4, 6)])
def test_every_gradient_matches_central_differences(layers, heads, T, dropout):
    model = _model(layers=layers, heads=heads)
    rng = np.random.default_rng(layers * 10 + T)
    x, y = rng.integers(0, 6, (3, T)), rng.integers(0, 7, (3, T))  # id 6 never read: wte's row gets no gradient
    loss, grads, state = model.loss_and_grads(x, y, dropout=dropout, rng=np.random.default_rng(9))
    numerical = _numerical(model, x, y, dropout)
    assert state.shape == (3, 0)
    assert np.array_equal(grads["wte"][6], np.zeros(8)) and np.array_equal(grads["wpe"][T:], np.zeros((6 - T, 8)))
    for name, expected in numerical.items():
        scale = max(np.abs(expected).max(), 1e-3)
        assert np.abs(grads[name] - expected).max() / scale < 1e-6, name


def test_the_gradient_check_can_fail():
    """A mistake in one block's backward pass (its MLP's bias gradient doubled) is caught."""
    model = _model()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 7, (2, 4)), rng.integers(0, 7, (2, 4))
    _, grads, _ = model.loss_and_grads(x, y)
    numerical = _numerical(model, x, y, 0.0)
    wrong = 2 * grads["h1.mlp.c_fc.bias"]
    assert np.abs(wrong - numerical["h1.mlp.c_fc.bias"]).max() > 1e-3


def test_a_window_is_a_context_of_its_own_and_dropout_is_drawn_from_the_rng():
    model = _model()
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 7, (4, 6)), rng.integers(0, 7, (4, 6))
    # the loss of the first t characters does not depend on what comes after them (causal)
    whole = model._forward(x, y, None)
    per_position = -np.log(model._workspace(4, 6).head.probs[np.arange(24), y.reshape(-1)]).reshape(4, 6)
    assert np.isclose(whole, per_position.mean())
    assert np.isclose(model.loss(x[:, :3], y[:, :3])[0], per_position[:, :3].mean())
    a = model.loss_and_grads(x, y, dropout=0.2, rng=np.random.default_rng(1))[0]
    b = model.loss_and_grads(x, y, dropout=0.2, rng=np.random.default_rng(1))[0]
    c = model.loss_and_grads(x, y, dropout=0.2, rng=np.random.default_rng(2))[0]
    assert a == b != c
    with pytest.raises(ValueError, match="rng"):
        model.loss_and_grads(x, y, dropout=0.2)


def test_float32_stays_float32_and_matches_float64():
    wide = _model(dtype=np.float64)
    narrow = Transformer(7, 8, seed=None, dtype=np.float32, layers=2, heads=2, context=6)
    narrow.flat[...] = wide.flat
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 7, (3, 6)), rng.integers(0, 7, (3, 6))
    l64, g64, _ = wide.loss_and_grads(x, y)
    l32, g32, _ = narrow.loss_and_grads(x, y)
    assert all(g.dtype == np.float32 for g in g32.values())
    assert abs(l32 - l64) < 1e-5
    for name in g64:
        assert np.abs(g32[name] - g64[name]).max() <= 1e-4 * max(1.0, np.abs(g64[name]).max()), name


def _probabilities(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _full_pass(model, x):
    """The training pass's next-character probabilities after each of x (B, T)."""
    B, T = x.shape
    model.loss(x, x)
    return model._workspace(B, T).head.probs.reshape(B, T, -1).copy()


def test_the_stepper_agrees_with_the_training_pass_and_feed_with_steps():
    model = _model(dtype=np.float32, context=8)
    x = np.random.default_rng(5).integers(0, 7, (3, 8))
    step = model.stepper(3)
    stepped = np.stack([_probabilities(step(x[:, t]).copy()) for t in range(8)], axis=1)
    np.testing.assert_allclose(stepped, _full_pass(model, x), atol=2e-6)
    fed = model.stepper(3)
    np.testing.assert_allclose(_probabilities(fed.feed(x[:, :5])), stepped[:, 4], atol=2e-6)
    np.testing.assert_allclose(_probabilities(fed(x[:, 5])), stepped[:, 5], atol=2e-6)


def test_a_full_context_slides_to_its_last_half_in_steps_and_in_feed():
    """Past C characters, the next is predicted from the last C/2 (and those read since)."""
    C = 8
    model = _model(dtype=np.float32, context=C)
    x = np.random.default_rng(6).integers(0, 7, (2, 23))
    step = model.stepper(2)
    stepped = np.stack([_probabilities(step(x[:, t]).copy()) for t in range(23)], axis=1)
    # character 9 (index 8) comes when the context is full: the cache keeps characters 5..8
    np.testing.assert_allclose(stepped[:, 8:12], _full_pass(model, x[:, 4:12])[:, 4:], atol=2e-6)
    np.testing.assert_allclose(stepped[:, 12:16], _full_pass(model, x[:, 8:16])[:, 4:], atol=2e-6)
    assert not np.allclose(stepped[:, 8], _full_pass(model, x[:, 1:9])[:, -1], atol=1e-3)  # not a rolling window
    for cut in (1, 7, 8, 9, 13, 22):
        fed = model.stepper(2)
        fed.feed(x[:, :cut])
        np.testing.assert_allclose(_probabilities(fed.feed(x[:, cut : cut + 1])), stepped[:, cut], atol=2e-6)
    np.testing.assert_allclose(_probabilities(model.stepper(2).feed(x)), stepped[:, -1], atol=2e-6)


def test_a_row_of_zeros_starts_a_fresh_sequence_and_rows_move_with_the_state():
    model = _model(dtype=np.float32, context=6)
    x = np.random.default_rng(7).integers(0, 7, (3, 9))
    step = model.stepper(3)
    step.feed(x)
    state = step.state
    assert state.shape[:2] == (1, 3)
    state[:, 1] = 0.0  # a new sequence in row 1
    step.state = state
    logits = step(x[:, 0]).copy()
    np.testing.assert_allclose(logits[1], model.stepper(1)(x[1:2, 0])[0], atol=1e-6)
    moved = model.stepper(2)
    moved.state = step.state[:, [2, 0]]
    np.testing.assert_allclose(moved(x[[2, 0], 1]), step(x[:, 1])[[2, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="state has shape"):
        moved.state = np.zeros((1, 3, 5), np.float32)


def test_it_keeps_the_model_contract_and_copies_pytorch_names():
    model = get_model("transformer:layers=2,heads=2,context=16", 11, 8)
    assert isinstance(model, Model)
    check_model(model, "transformer")
    assert model.options() == {"layers": 2, "heads": 2, "context": 16}
    assert model.max_window == 16 and model.input_weights == ("wte",)
    assert {"wte", "wpe", "h1.attn.c_attn.weight", "h1.mlp.c_proj.bias", "ln_f.weight", "V", "c"} <= set(model.params)
    assert model.params["h0.attn.c_attn.weight"].shape == (24, 8)  # nn.Linear's (out, in)
    again = get_model("transformer:layers=2,heads=2,context=16", 11, 8)
    assert np.array_equal(model.flat, again.flat)


@pytest.mark.parametrize("spec,message", [
    ("transformer:heads=3", "heads must divide the width (hidden size 8), got 3"),
    ("transformer:context=0", "context must be a whole number of at least 1, got 0"),
    ("transformer:layers=65", "layers must be at most 64"),
])
def test_a_wrong_option_is_one_line(spec, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_model(spec, 11, 8)


def test_a_window_longer_than_the_context_is_refused_before_training(tmp_path):
    corpus = Corpus.from_text("fox", TEXT)
    with pytest.raises(UsageError, match="reads at most 8 characters at once .* seq_len is 12"):
        Run.start(corpus, model="transformer:context=8", out=tmp_path / "a.npz", hidden_size=8, seq_len=12)
    items = Corpus.from_items("words", ["a" * 9, "bb"])
    with pytest.raises(UsageError, match="'words' has items of up to 10 characters with their ends; .* reads at most 8 at once .*; "
                                         "give the model a longer context or use shorter items"):
        Run.start(items, model="transformer:context=8", out=tmp_path / "b.npz", hidden_size=8)
    with pytest.raises(ValueError, match="longer than the transformer's context of 8"):
        get_model("transformer:context=8", 5, 8).loss(np.zeros((1, 9), int), np.zeros((1, 9), int))


def test_it_trains_on_windows_of_its_context_unless_told_and_warns_of_untrained_positions(tmp_path):
    corpus = Corpus.from_text("fox", TEXT)
    run = Run.start(corpus, model="transformer:layers=1,heads=2,context=12", out=tmp_path / "a.npz", hidden_size=8)
    assert run.spec.config.seq_len == 12
    with pytest.warns(CharseqWarning, match="positions 6 to 11 of the model's context are never trained"):
        Run.start(corpus, model="transformer:layers=1,heads=2,context=12", out=tmp_path / "b.npz", hidden_size=8,
                  seq_len=6)


def test_it_trains_saves_and_generates_through_the_api(tmp_path):
    corpus = Corpus.from_text("fox", TEXT)
    out = tmp_path / "t.npz"
    result = Run.start(corpus, model="transformer:layers=1,heads=2,context=16", out=out, hidden_size=16,
                       batch_size=4, epochs=30, optimizer="adam", lr=0.01, input_lr_scale=1.0, warmup=0,
                       dropout=0.0).fit()
    assert result.status == "finished"
    saved = charseq.load(out)
    first, last = saved.training["history"][0]["loss"], saved.training["history"][-1]["loss"]
    assert last < 0.5 * first
    [text] = generate(saved.model, saved.vocab, "the quick", 60, "argmax")
    assert len(text) == 60


@pytest.mark.parametrize("scale,above,below", [(1.0, 0, 0), (30.0, 0, 0), (3000.0, 0, 500.0), (1.0, 50, 42.0),
                                               (1.0, 0, 90.0), (1.0, 50, 150.0)])
def test_attentions_softmax_is_exact_however_large_the_scores(scale, above, below):
    """Small scores go unshifted, large ones are shifted by the global max, and rows that
    would underflow next to a far larger one (to zero, or to a subnormal sum whose
    reciprocal overflows: NaN in training) are shifted row by row."""
    from charseq.models.transformer_ops import softmax

    rng = np.random.default_rng(int(scale + below))
    scores = rng.normal(0, scale, (2, 3, 5, 5)).astype(np.float32)
    scores[1, 2, 4] += above  # one row far above the rest
    scores[0, 1] -= below  # a head whose every score lies far below the others
    scores += np.triu(np.full((5, 5), -np.inf, np.float32), k=1)
    A = np.empty_like(scores)
    softmax(A, lambda: np.copyto(A, scores), np.ones(5, np.float32))
    wide = scores.astype(np.float64)
    expected = np.exp(wide - wide.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(A, expected, rtol=1e-5, atol=1e-7)
    assert np.all(np.triu(A[..., :, :], k=1) == 0.0)


def test_its_suggested_settings_stand_above_the_corpuss_and_below_what_is_given(tmp_path):
    corpus = Corpus.from_text("fox", TEXT * 4)  # a text: its suggestions are the GRU's (B=32, lr 4e-3, ...)
    gru = Run.start(corpus, out=tmp_path / "g.npz").spec.config
    run = Run.start(corpus, model="transformer", out=tmp_path / "t.npz").spec.config
    assert (run.hidden_size, run.lr, run.input_lr_scale, run.dropout, run.warmup, run.seq_len) \
        == (128, 3e-3, 1.0, 0.0, 100, 64)
    assert (run.weight_decay, gru.weight_decay) == (0.1, 0.0)
    assert (gru.hidden_size, gru.lr) != (128, 3e-3)
    assert (run.epochs, run.batch_size, run.clip_norm) == (gru.epochs, gru.batch_size, gru.clip_norm)  # the corpus's
    given = Run.start(corpus, model="transformer:context=32", out=tmp_path / "u.npz", lr=1e-3, batch_size=4).spec.config
    assert (given.lr, given.batch_size, given.seq_len, given.hidden_size) == (1e-3, 4, 32, 128)


def test_a_models_training_defaults_that_are_not_settings_are_one_line(tmp_path, monkeypatch):
    from charseq.errors import CharseqError
    from charseq.hooks.registry import get_registry

    factory = get_registry().get("model", "transformer").factory
    monkeypatch.setattr(factory, "training_defaults", ["lr"])
    with pytest.raises(CharseqError, match="its training_defaults \\['lr'\\] are not a mapping"):
        Run.start(Corpus.from_text("fox", TEXT), model="transformer", out=tmp_path / "t.npz")


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_memory_needed_is_about_what_a_training_step_allocates(dropout):
    """charseq refuses a run too large for the machine by this estimate."""
    import tracemalloc

    model = get_model("transformer:layers=2,heads=4,context=32", 40, 32)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 40, (8, 32)), rng.integers(0, 40, (8, 32))
    grads = model.gradient_buffer()[1]
    tracemalloc.start()
    model.loss_and_grads(x, y, out=grads, dropout=dropout, rng=rng)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0.8 * peak <= model.memory_needed(8, 32) <= 1.5 * peak


@pytest.mark.parametrize("window", ["abc", 0, -1, 1.5, True])
def test_a_plugins_max_window_that_is_not_a_count_is_one_line(window):
    from charseq.errors import CharseqError

    model = get_model("transformer:layers=1,heads=2,context=8", 5, 4)
    model.max_window = window
    with pytest.raises(CharseqError, match="its max_window .* is not a whole number of characters of at least 1"):
        check_model(model, "plugin p: model 'transformer'")


def test_training_defaults_that_are_not_settings_are_one_line(tmp_path, monkeypatch):
    from charseq.errors import CharseqError
    from charseq.hooks.registry import get_registry

    monkeypatch.setattr(get_registry().get("model", "transformer").factory, "training_defaults", {"nonsense": 1})
    with pytest.raises(CharseqError, match="its training_defaults name 'nonsense', which is not a training setting"):
        Run.start(Corpus.from_text("fox", TEXT), model="transformer", out=tmp_path / "t.npz")


def test_eval_refuses_items_longer_than_the_context_and_reads_the_held_out_text_in_the_windows_given(tmp_path):
    from conftest import run_cli

    (tmp_path / "fox.txt").write_text((TEXT + "\n") * 4)
    out = tmp_path / "t.npz"
    run_cli("train", "--corpus", f"text:{tmp_path / 'fox.txt'}", "--model", "transformer:layers=1,heads=2,context=16",
            "--hidden-size", "8", "--epochs", "1", "-q", "--sample-length", "0", "--out", out)
    (tmp_path / "long.txt").write_text("the fox\n" + "the quick brown fox jumps\n")
    result = run_cli("eval", out, "--corpus", f"lines:{tmp_path / 'long.txt'}", ok=False)
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "Error: corpus 'long' has items of up to 26 characters with their ends; model 'transformer' of plugin "
        "'charseq.plugins.models' (bundled with charseq) reads at most 16 at once (its context)"]
    scores = {seq_len: charseq.training.scoring.score_checkpoint(out, seq_len=seq_len).loss for seq_len in (1, 4, 16)}
    assert len(set(scores.values())) == 3  # a window of one character reads nothing before it


def _epoch_windows(trainer, epoch):
    order = np.random.default_rng(epoch).permutation(trainer.batches.order_size)
    return [(x.copy(), y.copy()) for x, y in trainer.batches.epoch(0, None, order, trainer.batches.offset(epoch))]


def test_a_text_is_read_as_shuffled_windows_cut_at_a_fresh_offset_each_epoch():
    """A model that carries nothing gains nothing from streams: it reads every window of
    the training text once an epoch, in shuffled order, cut where the seed and epoch say."""
    corpus = Corpus.from_text("counting", "".join(f"{i:04d}," for i in range(120)))  # no window twice in it
    config = charseq.TrainConfig(seq_len=8, batch_size=4, val_fraction=0.1, seed=3)
    trainer = charseq.Trainer(get_model("transformer:layers=1,heads=2,context=8", len(corpus.vocab), 8), corpus,
                              config)
    batches = trainer.batches
    assert not batches.carries_state and batches.order_size == (len(batches.train_ids) - 8) // 8
    assert trainer.steps_per_epoch == batches.order_size // 4
    train = batches.train_ids
    starts_by_epoch = []
    for epoch in range(4):
        starts = []
        for x, y in _epoch_windows(trainer, epoch):
            assert x.shape == y.shape == (4, 8)
            assert np.array_equal(x[:, 1:], y[:, :-1])
            for row, target in zip(x, y):
                [start] = [s for s in range(len(train) - 8) if np.array_equal(train[s:s + 8], row)
                           and np.array_equal(train[s + 1:s + 9], target)] or [None]
                starts.append(start)
        offsets = {start % 8 for start in starts}
        assert len(offsets) == 1 and offsets == {batches.offset(epoch)}
        assert len(set(starts)) == len(starts) == trainer.steps_per_epoch * 4  # no window twice
        assert starts != sorted(starts)  # shuffled
        starts_by_epoch.append(offsets.pop())
    assert len(set(starts_by_epoch)) > 1  # the cut moves from epoch to epoch
    again = charseq.Trainer(get_model("transformer:layers=1,heads=2,context=8", len(corpus.vocab), 8), corpus,
                            config)
    assert [again.batches.offset(epoch) for epoch in range(4)] == starts_by_epoch  # the seed decides


def test_a_recurrent_model_still_reads_a_text_as_streams_that_carry_its_state():
    corpus = Corpus.from_text("fox", TEXT)
    trainer = charseq.Trainer(get_model("gru", len(corpus.vocab), 8), corpus,
                              charseq.TrainConfig(seq_len=8, batch_size=4))
    assert trainer.batches.carries_state and trainer.batches.order_size == 0


def test_a_text_too_short_for_a_batch_of_windows_is_one_line(tmp_path):
    corpus = Corpus.from_text("short", "abcdefghij" * 7)
    with pytest.raises(UsageError, match="too short for a batch of 8 windows of 9 characters"):
        Run.start(corpus, model="transformer:layers=1,heads=2,context=8", out=tmp_path / "a.npz", hidden_size=8,
                  batch_size=8, val_fraction=0.0).fit()


def test_a_mid_epoch_checkpoint_without_the_order_of_its_windows_says_what_to_do(tmp_path):
    """A transformer run on a text that a release before 0.9 cut part way through an epoch
    (it read streams, so it saved no order of windows) is refused in one line."""
    from charseq.checkpoints.format import load, save
    from conftest import InterruptAt

    cut = tmp_path / "cut.npz"
    Run.start(Corpus.from_text("fox", TEXT), model="transformer:layers=1,heads=2,context=8", out=cut, hidden_size=8,
              batch_size=4, epochs=2, extra_callbacks=[InterruptAt(3)]).fit()
    saved = load(cut)
    assert "trainer.order" in saved.arrays
    del saved.arrays["trainer.order"]
    save(cut, saved)
    with pytest.raises(UsageError, match="lacks the order of its windows .before 0.9, charseq read a text as "
                                         "streams .* resume it with the release that wrote it, or train afresh"):
        Run.resume(cut, corpus=Corpus.from_text("fox", TEXT))
