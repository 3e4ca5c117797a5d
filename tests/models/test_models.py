"""Every bundled model, stacked or not, against float64 central differences and itself.

The vanilla RNN's own seed-equation tests are in test_model.py; PyTorch parity is in
test_torch_parity.py.
"""

import numpy as np
import pytest

import charseq
from charseq import GRU, LSTM, VanillaRNN
from charseq.errors import UsageError
from charseq.models.base import Model, check_model, flat_slice
from gradients import central_differences

CLASSES = {"rnn": VanillaRNN, "gru": GRU, "lstm": LSTM}
MODELS = [(name, layers) for name in CLASSES for layers in (1, 2, 3)]


def _model(name, layers, V=7, H=5, dtype=np.float64, seed=1):
    """A model with every parameter (biases too) moved away from its initialisation."""
    model = CLASSES[name](V, H, seed=seed, dtype=dtype, layers=layers)
    rng = np.random.default_rng(seed)
    for value in model.params.values():
        value += rng.normal(0, 0.4, value.shape).astype(dtype)
    return model


def _batch(model, B=3, T=4, seed=2):
    rng = np.random.default_rng(seed)
    V = model.vocab_size
    x = rng.integers(0, V - 1, size=(B, T))  # the last id never appears: its input rows get no gradient
    y = rng.integers(0, V, size=(B, T))
    state = rng.normal(0, 0.5, size=model.state_shape(B))
    return x, y, state


def _numerical(model, x, y, state, options):
    """Central differences of every parameter; a fresh rng of one seed per call keeps the masks."""
    def loss():
        fresh = {k: np.random.default_rng(v) if k == "rng" else v for k, v in options.items()}
        return model.loss_and_grads(x, y, state, **fresh)[0]

    return central_differences(loss, model.params)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("name,layers", MODELS)
def test_every_gradient_matches_central_differences(name, layers, dropout):
    model = _model(name, layers)
    x, y, state = _batch(model)
    options = {"dropout": dropout, "rng": 5} if dropout else {}
    fresh = {k: np.random.default_rng(v) if k == "rng" else v for k, v in options.items()}
    _, grads, _ = model.loss_and_grads(x, y, state, **fresh)
    numerical = _numerical(model, x, y, state, options)
    for param, expected in numerical.items():
        assert grads[param].shape == model.params[param].shape
        error = np.linalg.norm(grads[param] - expected) / np.linalg.norm(grads[param] + expected)
        assert error < 1e-6, f"{name} layers={layers} {param}: relative error {error:.2e}"
    assert not np.any(grads[model.input_weights[0]][:, model.vocab_size - 1])  # an absent id: exactly 0


@pytest.mark.parametrize("name,layers", MODELS)
def test_the_state_carries_a_window_on_exactly(name, layers):
    """Two windows of T with the state carried are one window of 2T."""
    model = _model(name, layers)
    x, y, state = _batch(model, T=6)
    whole, last = model.loss(x, y, state)
    first, middle = model.loss(x[:, :3], y[:, :3], state)
    second, end = model.loss(x[:, 3:], y[:, 3:], middle)
    assert (first + second) / 2 == pytest.approx(whole, rel=1e-12)
    np.testing.assert_allclose(end, last, rtol=1e-12)
    assert model.loss_and_grads(x, y, state)[0] == pytest.approx(whole, rel=1e-14)


@pytest.mark.parametrize("name,layers", MODELS)
def test_stepper_agrees_with_the_training_pass(name, layers):
    model = _model(name, layers)
    x, y, _ = _batch(model, T=5)
    _, state = model.loss(x, y)
    step = model.stepper(x.shape[0])
    logits = step.feed(x)
    np.testing.assert_allclose(step.state, state, rtol=1e-10, atol=1e-12)
    top = state[-1][:, : model.hidden_size]
    np.testing.assert_allclose(logits, top @ model.params["V"].T + model.params["c"], rtol=1e-10, atol=1e-12)
    # one step more: the training pass over six characters says the same
    ids = np.array([0, 3, 6])
    after = step(ids).copy()
    longer = np.concatenate([x, ids[:, None]], axis=1)
    _, state6 = model.loss(longer, np.zeros_like(longer))
    np.testing.assert_allclose(after, state6[-1][:, : model.hidden_size] @ model.params["V"].T + model.params["c"],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,layers", MODELS)
def test_float32_stays_float32_and_matches_float64(name, layers):
    model64 = _model(name, layers)
    model32 = CLASSES[name](7, 5, seed=None, dtype=np.float32, layers=layers)
    for param, value in model64.params.items():
        model32.params[param] = value.astype(np.float32)
    x, y, state = _batch(model64)
    loss64, grads64, _ = model64.loss_and_grads(x, y, state)
    loss32, grads32, state32 = model32.loss_and_grads(x, y, state.astype(np.float32))
    assert state32.dtype == np.float32 and loss32 == pytest.approx(loss64, rel=1e-5)
    for param in model64.params:
        assert grads32[param].dtype == np.float32
        np.testing.assert_allclose(grads32[param], grads64[param], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name,layers", MODELS)
def test_each_model_keeps_the_contract(name, layers):
    model = charseq.get_model(f"{name}:layers={layers}", 11, 6)
    assert isinstance(model, Model) and model.name == name and model.options() == {"layers": layers}
    check_model(model, name)
    assert model.dtype == np.float32 and model.flat.dtype == np.float32
    sizes = sum(v.size for v in model.params.values())
    assert sizes == model.flat.size  # every parameter lies in the flat buffer, none overlap
    covered = np.zeros(model.flat.size, dtype=int)
    for view in model.params.values():
        covered[flat_slice(model.flat, view)] += 1
    assert np.all(covered == 1)
    flat, grads = model.gradient_buffer()
    assert flat.shape == model.flat.shape and set(grads) == set(model.params)
    assert model.state_shape(4) == (layers, 4, (2 if name == "lstm" else 1) * 6)


def test_the_bundled_models_use_pytorchs_names_and_the_seeds():
    assert list(charseq.get_model("rnn:layers=2", 4, 3).params) == ["U", "W", "b", "U1", "W1", "b1", "V", "c"]
    assert list(charseq.get_model("gru", 4, 3).params) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                          "bias_hh_l0", "V", "c"]
    lstm = charseq.get_model("lstm:layers=2", 4, 3)
    assert {n: v.shape for n, v in lstm.params.items()} == {
        "weight_ih_l0": (12, 4), "weight_hh_l0": (12, 3), "bias_l0": (12,), "weight_ih_l1": (12, 3),
        "weight_hh_l1": (12, 3), "bias_l1": (12,), "V": (4, 3), "c": (4,)}
    np.testing.assert_array_equal(lstm.params["bias_l0"][3:6], 1.0)  # the forget gate starts open


def test_the_same_seed_gives_the_same_weights_and_rnn_keeps_its_draws():
    a, b = charseq.get_model("lstm:layers=2", 5, 4, seed=3), charseq.get_model("lstm:layers=2", 5, 4, seed=3)
    assert np.array_equal(a.flat, b.flat)
    assert not np.array_equal(a.flat, charseq.get_model("lstm:layers=2", 5, 4, seed=4).flat)
    # one rnn layer draws as the seed's VanillaRNN always has: U, then W, then V
    rng = np.random.default_rng(0)
    U, W, V = rng.uniform(-1, 1, (4, 5)), rng.uniform(-0.5, 0.5, (4, 4)), rng.uniform(-0.5, 0.5, (5, 4))
    model = VanillaRNN(5, 4, seed=0, dtype=np.float64)
    for name, value in (("U", U), ("W", W), ("V", V)):
        np.testing.assert_array_equal(model.params[name], value)


@pytest.mark.parametrize("spec,message", [
    ("lstm:layers=0", "layers must be a whole number of at least 1"),
    ("lstm:layers=two", "must be a whole number"),
    ("gru:depth=2", "has no option 'depth'; its options are layers"),
    ("rnn:hidden_size=8", "hidden_size is not a model option"),
    ("mamba", "unknown model 'mamba'; known: gru, lstm, rnn, transformer"),
    ("lstm:layers=65", "layers must be at most 64"),
    ("lstm:layers=1_0", "layers must be a whole number, got '1_0'"),
    ("lstm:layers=\u0663", "layers must be a whole number"),
])
def test_a_wrong_model_choice_is_one_line(spec, message):
    with pytest.raises(UsageError, match=message):
        charseq.get_model(spec, 5, 4)


def test_dropout_needs_an_rng_and_a_rate_below_one():
    model = _model("gru", 2)
    x, y, state = _batch(model)
    with pytest.raises(ValueError, match="rng"):
        model.loss_and_grads(x, y, state, dropout=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        model.loss_and_grads(x, y, state, dropout=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="state has shape"):
        model.loss(x, y, state[:1])


def test_options_from_python_may_be_numpy_integers():
    assert charseq.get_model("gru", 5, 4, layers=np.int64(2)).options() == {"layers": 2}


@pytest.mark.parametrize("name", list(CLASSES))
def test_both_ways_of_gathering_layer_0s_input_agree(name, monkeypatch):
    """Past a size layer 0 gathers its input step by step (unchecked, for speed): the same
    loss, state and gradients as the one gather of rows, in float64."""
    import charseq.models.recurrent as recurrent

    model = _model(name, 2)
    x, y, state = _batch(model, B=4, T=6)
    results = []
    for threshold in (10**9, 0):  # rows always, then step by step always
        monkeypatch.setattr(recurrent, "_GATHER_BY_STEP", threshold)
        model._workspaces.clear()
        loss, grads, last = model.loss_and_grads(x, y, state, dropout=0.2, rng=np.random.default_rng(3))
        results.append((loss, {k: v.copy() for k, v in grads.items()}, last))
    (loss0, grads0, last0), (loss1, grads1, last1) = results
    assert loss0 == pytest.approx(loss1, rel=1e-12)
    np.testing.assert_allclose(last0, last1, rtol=1e-12)
    for param in grads0:
        np.testing.assert_allclose(grads0[param], grads1[param], rtol=1e-10, atol=1e-14, err_msg=param)


@pytest.mark.parametrize("threshold", [10**9, 0])
@pytest.mark.parametrize("bad", [7, -1])
def test_an_id_outside_the_vocabulary_is_refused_on_either_path(threshold, bad, monkeypatch):
    import charseq.models.recurrent as recurrent

    monkeypatch.setattr(recurrent, "_GATHER_BY_STEP", threshold)
    model = _model("gru", 1)  # V = 7
    x, y, _ = _batch(model)
    x[1, 2] = bad
    with pytest.raises(ValueError, match=r"ids must be in \[0, 7\)"):
        model.loss_and_grads(x, y)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 7\)"):
        model.loss(x, y)
