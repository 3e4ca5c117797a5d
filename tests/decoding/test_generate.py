import numpy as np
import pytest

from charseq import UsageError, VanillaRNN, Vocabulary, generate
from charseq.plugins.samplers import Argmax, Temperature, TopK, TopP


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


@pytest.mark.parametrize("temperature", [-1, float("nan"), float("inf")])
def test_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(UsageError, match="temperature"):
        Temperature(temperature)


@pytest.mark.parametrize("sampler", [Temperature(0), TopK(k=3, temperature=0), TopP(p=0.5, temperature=0)])
def test_temperature_zero_is_greedy(sampler):
    """0 is the most likely symbol, as OpenAI's API has it, not a refusal."""
    logits = np.random.default_rng(1).normal(size=(64, 10)).astype(np.float32)
    assert np.array_equal(sampler(logits, np.random.default_rng(2)), logits.argmax(axis=1))


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


class Scripted:
    """A sampler that ignores the logits and plays back a script (one row per sample)."""

    def __init__(self, vocab, *scripts):
        self.ids = [vocab.encode(script) for script in scripts]
        self.calls = 0
        self.seen = []

    def __call__(self, logits, rng):
        self.seen.append(logits.copy())
        ids = np.array([script[self.calls] for script in self.ids])
        self.calls += 1
        return ids


@pytest.mark.parametrize("script,stop,expected", [
    ("abcdefgh", "d", "abc"),
    ("abcabdab", "abd", "abc"),  # 'ab' is held back, then let through when 'c' follows
    ("aaaa", "ab", "aaaa"),  # never stops: everything comes out, the held-back 'a' at the end
    ("hgfedcba", "h", ""),
])
def test_stop_ends_a_sample_before_the_stop_text(model_and_vocab, script, stop, expected):
    from charseq.decoding.generate import stream

    model, vocab = model_and_vocab
    texts = generate(model, vocab, "a", len(script), Scripted(vocab, script), stop=stop)
    assert texts == [expected]
    pieces = list(stream(model, vocab, "a", len(script), Scripted(vocab, script), stop=stop))
    assert "".join(p[0] for p in pieces) == expected
    assert all(stop not in p[0] for p in pieces)


def test_samples_of_a_batch_stop_independently_and_the_batch_ends_early(model_and_vocab):
    model, vocab = model_and_vocab
    sampler = Scripted(vocab, "abcdefgh", "hhgfedbb", "cccccccc")
    texts = generate(model, vocab, "a", 8, sampler, num_samples=3, stop="c")
    assert texts == ["ab", "hhgfedbb", ""]
    sampler = Scripted(vocab, "abcdefgh", "bcdefgha")
    assert generate(model, vocab, "a", 8, sampler, num_samples=2, stop="c") == ["ab", "b"]
    assert sampler.calls == 3  # of 8: once both samples had ended, no more steps were taken


def test_stream_pieces_add_up_to_generate(model_and_vocab):
    from charseq.decoding.generate import stream

    model, vocab = model_and_vocab
    pieces = list(stream(model, vocab, "ab", 50, Temperature(1.0), rng=4, num_samples=2))
    joined = ["".join(step[i] for step in pieces) for i in range(2)]
    assert joined == generate(model, vocab, "ab", 50, Temperature(1.0), rng=4, num_samples=2)


def test_repetition_penalty_scales_the_logits_of_used_symbols(model_and_vocab):
    model, vocab = model_and_vocab
    plain, penalised = Scripted(vocab, "ccc"), Scripted(vocab, "ccc")
    generate(model, vocab, "ab", 3, plain)
    generate(model, vocab, "ab", 3, penalised, repetition_penalty=2.0)
    for step, (before, after) in enumerate(zip(plain.seen, penalised.seen)):
        used = {0, 1} | ({2} if step > 0 else set())  # a, b from the prime; c once generated
        for symbol in range(len(vocab)):
            x = before[0, symbol]
            expected = (x / 2 if x > 0 else x * 2) if symbol in used else x
            assert after[0, symbol] == pytest.approx(expected, rel=1e-6)


def test_repetition_window_forgets_older_symbols(model_and_vocab):
    model, vocab = model_and_vocab
    plain, windowed = Scripted(vocab, "cdef"), Scripted(vocab, "cdef")
    generate(model, vocab, "ab", 4, plain)
    generate(model, vocab, "ab", 4, windowed, repetition_penalty=3.0, repetition_window=2)
    last_before, last_after = plain.seen[-1][0], windowed.seen[-1][0]
    changed = {s for s in range(len(vocab)) if not np.isclose(last_before[s], last_after[s])}
    assert changed == {3, 4}  # only d and e, the last two characters before the final step


@pytest.mark.parametrize("sampler", ["top-p", "min-p", "temperature"])
@pytest.mark.parametrize("penalty", ["1e-300", "1e-7", "1e7", "nan", "inf"])
def test_a_repetition_penalty_no_logit_can_hold_is_refused_in_one_line(alphabet_checkpoint, sampler, penalty):
    """1e-300 scaled the logits of used symbols past float32's range: 30 newlines and numpy's
    warnings came out. Outside 1e-6..1e6 it is refused, before anything is printed."""
    from conftest import run_cli

    result = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--sampler", sampler,
                     "--repetition-penalty", penalty, ok=False)
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.output
    assert "repetition penalty must be above 0, from 1e-06 to 1e+06" in result.stderr


def test_an_extreme_repetition_penalty_within_range_still_samples_letters(alphabet_checkpoint):
    from conftest import run_cli

    for penalty in ("1e-6", "1e6"):
        result = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--sampler", "top-p", "--seed", 1,
                         "--repetition-penalty", penalty, "--length", 30)
        assert result.stderr == "" and len(result.stdout) == 34 and result.stdout[:-1].isalpha(), result.output


def test_repetition_penalty_must_be_positive(model_and_vocab):
    model, vocab = model_and_vocab
    with pytest.raises(UsageError, match="repetition penalty"):
        generate(model, vocab, "a", 3, Argmax(), repetition_penalty=0)
    with pytest.raises(UsageError, match="stop text"):
        generate(model, vocab, "a", 3, Argmax(), stop="")


@pytest.mark.parametrize("name", ["top-k", "top-p", "min-p", "temperature"])
def test_batched_sampling_is_reproducible_with_a_seed(model_and_vocab, name):
    from charseq.hooks.registry import load_registry

    model, vocab = model_and_vocab
    make = load_registry().get("sampler", name).build
    first = generate(model, vocab, "a", 100, make(), rng=11, num_samples=4)
    assert first == generate(model, vocab, "a", 100, make(), rng=11, num_samples=4)
    assert len(set(first)) == 4
