import numpy as np
import pytest

from charseq import VanillaRNN
from charseq.models.rnn import PARAM_NAMES
from gradients import central_differences


def _random_model(V=7, H=6, dtype=np.float64, seed=1):
    """A model with every parameter (biases too) moved away from its initialisation."""
    model = VanillaRNN(V, H, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    for name, value in model.params.items():
        value += rng.normal(0, 0.4, value.shape).astype(dtype)
    return model


def _batch(V=7, H=6, B=3, T=5, seed=2, absent_id=True):
    rng = np.random.default_rng(seed)
    high = V - 1 if absent_id else V  # leave one id out: its column of dU must be exactly 0
    x = rng.integers(0, high, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    h0 = rng.normal(0, 0.5, size=(1, B, H))  # (layers, B, H)
    return x, y, h0


def _numerical_gradient(model, name, x, y, h0, **options):
    """Central differences; options (dropout, rng) are made afresh by _options for each call."""
    return central_differences(lambda: model.loss_and_grads(x, y, h0, **_options(options))[0],
                               {name: model.params[name]})[name]


@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("name", PARAM_NAMES)
def test_gradient_matches_central_differences(name, with_h0):
    model = _random_model()
    x, y, h0 = _batch()
    h0 = h0 if with_h0 else None
    _, grads, _ = model.loss_and_grads(x, y, h0)
    numerical = _numerical_gradient(model, name, x, y, h0)
    assert grads[name].shape == model.params[name].shape
    relative_error = np.linalg.norm(grads[name] - numerical) / np.linalg.norm(grads[name] + numerical)
    assert relative_error < 1e-6, f"{name}: relative error {relative_error:.2e}"


def _options(options):
    """A fresh rng of the same seed for every call, so each draws the same dropout mask."""
    return {key: np.random.default_rng(value) if key == "rng" else value for key, value in options.items()}


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_gradient_with_dropout_matches_central_differences(name):
    model = _random_model()
    x, y, h0 = _batch(B=4, T=6)
    options = {"dropout": 0.4, "rng": 3}
    _, grads, _ = model.loss_and_grads(x, y, h0, **_options(options))
    numerical = _numerical_gradient(model, name, x, y, h0, **options)
    relative_error = np.linalg.norm(grads[name] - numerical) / np.linalg.norm(grads[name] + numerical)
    assert relative_error < 1e-6, f"{name}: relative error {relative_error:.2e}"


def test_dropout_drops_the_share_asked_for_and_changes_the_loss():
    model = _random_model(V=7, H=50)
    x, y, h0 = _batch(H=50, B=40, T=25)
    plain = model.loss(x, y, h0)[0]
    dropped = model.loss_and_grads(x, y, h0, dropout=0.3, rng=np.random.default_rng(0))[0]
    mask = model._workspace(40, 25).head.dropout.mask
    assert abs(np.mean(mask == 0) - 0.3) < 0.01
    assert np.allclose(mask[mask != 0], 1 / 0.7)
    assert dropped != plain
    assert model.loss_and_grads(x, y, h0, dropout=0.0)[0] == plain


def test_input_gradient_for_a_vocabulary_past_the_one_hot_limit():
    """Past ONE_HOT_SCATTER_MAX_VOCAB symbols dU takes the sort + reduceat path."""
    from charseq.models.base import ONE_HOT_SCATTER_MAX_VOCAB

    V = ONE_HOT_SCATTER_MAX_VOCAB + 40
    model = _random_model(V=V, H=3)
    rng = np.random.default_rng(4)
    x = rng.integers(V - 20, V, size=(2, 6))  # few distinct ids, repeated, high in the range
    y = rng.integers(0, V, size=(2, 6))
    _, grads, _ = model.loss_and_grads(x, y)
    numerical = _numerical_gradient(model, "U", x, y, None)
    relative_error = np.linalg.norm(grads["U"] - numerical) / np.linalg.norm(grads["U"] + numerical)
    assert relative_error < 1e-6


def test_unused_input_symbol_gets_zero_gradient():
    model = _random_model()
    x, y, h0 = _batch(absent_id=True)
    _, grads, _ = model.loss_and_grads(x, y, h0)
    assert not np.any(grads["U"][:, 6])


def test_loss_is_mean_cross_entropy_per_character():
    """Against a direct, unbatched transcription of the seed's equations with one-hot matmuls."""
    model = _random_model()
    x, y, h0 = _batch()
    U, W, b, V, c = (model.params[n] for n in PARAM_NAMES)
    total = 0.0
    last = []
    for row in range(x.shape[0]):
        a = h0[0, row]
        for t in range(x.shape[1]):
            one_hot = np.eye(U.shape[1])[x[row, t]]
            a = np.tanh(U @ one_hot + W @ a + b)
            o = V @ a + c
            p = np.exp(o - o.max()) / np.exp(o - o.max()).sum()
            total -= np.log(p[y[row, t]])
        last.append(a)
    loss, _, h_last = model.loss_and_grads(x, y, h0)
    assert loss == pytest.approx(total / x.size, rel=1e-12)
    np.testing.assert_allclose(h_last, np.array(last)[None], rtol=1e-12)


def test_stepper_agrees_with_the_training_pass():
    model = _random_model()
    x, y, _ = _batch()
    _, _, h_last = model.loss_and_grads(x, y)
    step = model.stepper(x.shape[0])
    logits = step.feed(x)
    np.testing.assert_allclose(step.state, h_last, rtol=1e-12)
    U, W, b, V, c = (model.params[n] for n in PARAM_NAMES)
    np.testing.assert_allclose(logits, h_last[0] @ V.T + c, rtol=1e-12)
    # One more step by hand, from the seed's equations.
    ids = np.array([0, 3, 6])
    expected = np.tanh(U[:, ids].T + h_last[0] @ W.T + b) @ V.T + c
    np.testing.assert_allclose(step(ids), expected, rtol=1e-12)


def test_float32_stays_float32_and_matches_float64():
    model64 = _random_model(dtype=np.float64)
    model32 = VanillaRNN.from_params({k: v.astype(np.float32) for k, v in model64.params.items()})
    x, y, h0 = _batch()
    loss64, grads64, _ = model64.loss_and_grads(x, y, h0)
    loss32, grads32, h32 = model32.loss_and_grads(x, y, h0.astype(np.float32))
    assert h32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name in PARAM_NAMES:
        assert grads32[name].dtype == np.float32
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-3, atol=1e-6)


def test_parameters_have_the_seed_notation_shapes():
    model = VanillaRNN(vocab_size=26, hidden_size=64)
    shapes = {name: value.shape for name, value in model.params.items()}
    assert shapes == {"U": (64, 26), "W": (64, 64), "b": (64,), "V": (26, 64), "c": (26,)}
    assert all(value.dtype == np.float32 for value in model.params.values())


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = VanillaRNN(5, 4, seed=3), VanillaRNN(5, 4, seed=3), VanillaRNN(5, 4, seed=4)
    assert all(np.array_equal(a.params[n], b.params[n]) for n in PARAM_NAMES)
    assert not np.array_equal(a.params["W"], c.params["W"])


def test_parameters_refuse_a_wrong_shape():
    params = dict(VanillaRNN(5, 4).params)
    params["W"] = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="W"):
        VanillaRNN.from_params(params)
    with pytest.raises(ValueError, match="W"):
        VanillaRNN(5, 4).params["W"] = np.zeros((5, 4))


def test_parameters_are_views_of_one_flat_buffer():
    model = VanillaRNN(5, 4)
    model.params["b"] += 1.0
    model.params["W"] = np.eye(4)
    model.flat *= 2.0  # what the optimiser does
    assert np.all(model.params["b"] == 2.0) and np.array_equal(model.params["W"], 2 * np.eye(4))
    assert model.params["U"].shape == (4, 5)


def test_rows_far_below_the_global_max_keep_an_exact_loss():
    """Two rows whose logits differ by ~200: one shift for all rows would underflow the
    second to zeros in float32; the loss must still equal a float64 log-sum-exp."""
    model = VanillaRNN(3, 2, dtype=np.float32)
    model.params["U"] = [[5, -5, 0], [0, 0, 0]]
    model.params["W"] = np.zeros((2, 2))
    model.params["V"] = [[100, 0], [99, 0], [98, 0]]
    x, y = np.array([[0], [1]]), np.array([[2], [0]])
    loss, grads, _ = model.loss_and_grads(x, y)
    logits = np.tanh(np.array([5.0, -5.0]))[:, None] * np.array([100.0, 99.0, 98.0])  # (2, 3)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-(log_probs[0, 2] + log_probs[1, 0]) / 2, rel=1e-5)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_loss_is_finite_for_huge_logits():
    model = VanillaRNN(3, 2, dtype=np.float64)
    model.params["V"] = [[1e6, 0], [0, 1e6], [-1e6, 0]]
    x = np.zeros((1, 2), dtype=int)
    loss, grads, _ = model.loss_and_grads(x, np.array([[2, 2]]))
    assert np.isfinite(loss) and loss > 1e5
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_no_mapping_method_detaches_a_parameter_from_the_flat_buffer():
    model = VanillaRNN(5, 4)
    model.params.update({"b": np.ones(4), "W": np.eye(4)})  # copies into the views
    model.params.setdefault("c", np.zeros(5))
    model.flat *= 3.0
    assert np.all(model.params["b"] == 3.0) and np.array_equal(model.params["W"], 3 * np.eye(4))
    for remove in (lambda p: p.pop("W"), lambda p: p.popitem(), lambda p: p.clear(), lambda p: p.__delitem__("b")):
        with pytest.raises(TypeError, match="cannot be removed"):
            remove(model.params)
    with pytest.raises(KeyError):
        model.params["X"] = np.zeros(4)  # not a parameter
    assert list(model.params) == ["U", "W", "b", "V", "c"]
