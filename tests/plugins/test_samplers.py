"""Sampler semantics on hand-made logits, as users know them from common generation APIs."""

import numpy as np
import pytest

from charseq import UsageError
from charseq.plugins.samplers import Argmax, MinP, Temperature, TopK, TopP

PROBS = np.array([0.05, 0.5, 0.15, 0.3])  # most likely first: 1, 3, 2, 0
LOGITS = np.log(PROBS)[None, :]


def _draws(sampler, logits=LOGITS, n=20000, seed=0):
    rows = np.repeat(logits, n, axis=0)
    return sampler(rows, np.random.default_rng(seed))


def _kept(sampler, logits=LOGITS):
    return set(np.flatnonzero(np.isfinite(sampler.filter(logits)[0])).tolist())


@pytest.mark.parametrize("k,expected", [(1, {1}), (2, {1, 3}), (3, {1, 2, 3}), (4, {0, 1, 2, 3}), (9, {0, 1, 2, 3})])
def test_top_k_keeps_exactly_the_k_most_likely(k, expected):
    assert _kept(TopK(k=k)) == expected
    assert set(_draws(TopK(k=k), n=3000).tolist()) == expected


def test_top_k_keeps_exactly_k_among_ties():
    logits = np.zeros((50, 10))
    filtered = TopK(k=3).filter(logits)
    assert np.all(np.isfinite(filtered).sum(axis=1) == 3)


@pytest.mark.parametrize("p,expected", [(0.3, {1}), (0.75, {1, 3}), (0.9, {1, 3, 2}), (0.99, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    assert _kept(TopP(p=p)) == expected


def test_top_p_of_0_keeps_the_most_likely_alone_greedy_whatever_the_temperature():
    """OpenAI's top_p of 0 is greedy: the fewest symbols that reach 0 are the most likely one."""
    logits = np.random.default_rng(1).normal(size=(200, 30)).astype(np.float32) * 3
    for temperature in (1.0, 5.0):
        assert np.array_equal(TopP(p=0, temperature=temperature)(logits, np.random.default_rng(0)),
                              logits.argmax(axis=1))
    assert _kept(TopP(p=0)) == {1}


def test_top_p_applies_the_temperature_first():
    # At T=10 the probabilities flatten to about [0.22, 0.28, 0.24, 0.26]: three are
    # needed to reach 0.75, where at T=1 two were.
    assert _kept(TopP(p=0.75, temperature=10.0)) == {1, 2, 3}


@pytest.mark.parametrize("p,expected", [(0.0, {0, 1, 2, 3}), (0.25, {1, 2, 3}), (0.5, {1, 3}), (0.9, {1})])
def test_min_p_is_relative_to_the_top_probability(p, expected):
    assert _kept(MinP(p=p)) == expected  # thresholds: p * 0.5


def test_draws_follow_the_renormalised_distribution_of_the_kept_set():
    ids = _draws(TopK(k=2))
    frequencies = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(frequencies, [0, 0.5 / 0.8, 0, 0.3 / 0.8], atol=0.015)
    ids = _draws(MinP(p=0.25))
    frequencies = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(frequencies, [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95], atol=0.015)


@pytest.mark.parametrize("sampler", [Temperature(1e-6), TopK(k=3, temperature=1e-6), TopP(p=0.9, temperature=1e-6),
                                     MinP(p=0.1, temperature=1e-6)])
def test_temperature_near_zero_equals_argmax(sampler):
    logits = np.random.default_rng(1).normal(size=(300, 20)) * 2
    assert np.array_equal(sampler(logits, np.random.default_rng(2)), Argmax()(logits, None))


def test_rows_are_filtered_independently():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]))
    assert np.isfinite(TopK(k=1).filter(logits)).tolist() == [[True, False, False], [False, False, True]]
    assert np.isfinite(TopP(p=0.8).filter(logits)).tolist() == [[True, True, False], [False, True, True]]


@pytest.mark.parametrize("make", [lambda: TopK(k=5), lambda: TopP(p=0.8), lambda: MinP(p=0.05), Temperature])
def test_seeded_draws_are_reproducible(make):
    logits = np.random.default_rng(3).normal(size=(4, 30))
    first = [make()(logits, rng) for rng in [np.random.default_rng(7)] * 5]
    again = [make()(logits, rng) for rng in [np.random.default_rng(7)] * 5]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("make,message", [
    (lambda: TopK(k=0), "positive integer"), (lambda: TopK(k=2.5), "positive integer"),
    (lambda: TopP(p=-0.1), r"\[0, 1\]"), (lambda: TopP(p=1.5), r"\[0, 1\]"),
    (lambda: MinP(p=-0.1), r"\[0, 1\]"), (lambda: TopK(k=3, temperature=-1), "temperature"),
])
def test_bad_parameters_are_usage_errors(make, message):
    with pytest.raises(UsageError, match=message):
        make()


@pytest.mark.parametrize("spec", ["temperature", "top-k:k=5", "top-p:p=0.5", "min-p:p=0.1"])
@pytest.mark.parametrize("temperature", [1e-3, 1e-30, 1e-300, 5e-324])
def test_every_sampler_is_argmax_as_the_temperature_nears_zero(spec, temperature):
    from charseq.hooks.options import parse_options
    from charseq.hooks.registry import get_registry, parse_spec

    name, arg = parse_spec(spec)
    registered = get_registry().get("sampler", name)
    sampler = registered.build(**parse_options(arg, registered), temperature=temperature)
    logits = np.random.default_rng(0).normal(size=(64, 30)).astype(np.float32) * 3
    with np.errstate(over="raise", invalid="raise"):  # no overflow, no inf - inf on the way (underflow is fine)
        ids = sampler(logits, np.random.default_rng(1))
    np.testing.assert_array_equal(ids, logits.argmax(axis=1))
