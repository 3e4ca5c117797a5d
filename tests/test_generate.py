import numpy as np
import pytest

from charseq import UsageError, VanillaRNN, Vocabulary, generate
from charseq.plugins.samplers import Argmax, Temperature


@pytest.fixture
def model_and_vocab():
    vocab = Vocabulary("abcdefgh")
    model = VanillaRNN(len(vocab), 16, seed=3)
    for value in model.params.values():
        value *= 4  # sharper distributions than the initialisation gives
    return model, vocab


def test_argmax_picks_the_largest_logit_per_row():
    logits = np.array([[0.1, 3.0, -1.0], [5.0, 4.9, 0.0]])
    assert Argmax()(logits, np.random.default_rng()).tolist() == [1, 0]


def test_temperature_follows_the_softmax_distribution():
    logits = np.log(np.array([[0.1, 0.6, 0.3]] * 20000))
    ids = Temperature(1.0)(logits, np.random.default_rng(0))
    frequencies = np.bincount(ids, minlength=3) / len(ids)
    np.testing.assert_allclose(frequencies, [0.1, 0.6, 0.3], atol=0.015)


def test_temperature_near_zero_is_argmax():
    logits = np.random.default_rng(1).normal(size=(500, 30)) * 3
    ids = Temperature(1e-4)(logits, np.random.default_rng(2))
    assert np.array_equal(ids, logits.argmax(axis=1))


def test_high_temperature_flattens_the_distribution():
    logits = np.log(np.array([[0.9, 0.05, 0.05]] * 20000))
    ids = Temperature(100.0)(logits, np.random.default_rng(0))
    assert abs(np.mean(ids == 0) - 1 / 3) < 0.03


def test_zero_probability_symbols_are_never_drawn():
    logits = np.array([[0.0, -np.inf, 0.0, -np.inf]] * 5000)
    ids = Temperature(1.0)(logits, np.random.default_rng(3))
    assert set(ids.tolist()) == {0, 2}


@pytest.mark.parametrize("temperature", [0, -1, float("nan"), float("inf")])
def test_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(UsageError, match="temperature"):
        Temperature(temperature)


def test_argmax_generation_is_deterministic(model_and_vocab):
    model, vocab = model_and_vocab
    first = generate(model, vocab, "abc", 30, Argmax())
    assert first == generate(model, vocab, "abc", 30, Argmax())
    assert len(first) == 1 and len(first[0]) == 30 and set(first[0]) <= set(vocab.symbols)


def test_seeded_sampling_is_reproducible_and_seeds_differ(model_and_vocab):
    model, vocab = model_and_vocab
    a = generate(model, vocab, "a", 200, Temperature(1.0), rng=5, num_samples=3)
    b = generate(model, vocab, "a", 200, Temperature(1.0), rng=5, num_samples=3)
    c = generate(model, vocab, "a", 200, Temperature(1.0), rng=6, num_samples=3)
    assert a == b and a != c
    assert len(set(a)) == 3  # the samples of a batch are independent draws


def test_batched_argmax_equals_single_runs(model_and_vocab):
    model, vocab = model_and_vocab
    batch = generate(model, vocab, "hg", 25, Argmax(), num_samples=4)
    assert batch == generate(model, vocab, "hg", 25, Argmax()) * 4


def test_generation_matches_the_training_forward_pass(model_and_vocab):
    """The first generated id is the argmax of the logits the training pass computes."""
    model, vocab = model_and_vocab
    prime = "abcdh"
    logits = model.stepper(1).feed(vocab.encode(prime)[None, :])
    assert generate(model, vocab, prime, 1, Argmax())[0] == vocab.decode([logits[0].argmax()])


def test_bad_arguments_are_usage_errors(model_and_vocab):
    model, vocab = model_and_vocab
    with pytest.raises(UsageError, match="not in the vocabulary: 'z'"):
        generate(model, vocab, "az", 5, Argmax())
    with pytest.raises(UsageError, match="length"):
        generate(model, vocab, "a", -1, Argmax())
    with pytest.raises(UsageError, match="prime"):
        generate(model, vocab, "", 5, Argmax())
    assert generate(model, vocab, "a", 0, Argmax()) == [""]
