"""One decoding policy for the CLI, the Python API and the server (charseq.Decoding):
temperature 0 is greedy decoding with any sampler, as in OpenAI's API; every setting is
checked in one place; and the closing sample of a run is sampled, not greedy."""

from __future__ import annotations

import numpy as np
import pytest

import charseq
from charseq.checkpoints.format import Checkpoint, save
from charseq.data.corpus import Corpus
from charseq.decoding.closing import closing_sample
from charseq.serving.api import BadRequest
from serving_support import VOCAB, random_model, request, results
from charseq.serving.engine import Engine
from conftest import run_cli

PROMPT = "abc d"
SAMPLERS = ["temperature", "top-k:k=3", "top-p:p=0.9", "min-p:p=0.05"]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_temperature_zero_is_the_same_greedy_text_in_the_cli_the_api_and_the_server(tmp_path, sampler):
    model = random_model()
    path = save(tmp_path / "m.npz", Checkpoint(model, VOCAB))
    argmax = charseq.generate(model, VOCAB, PROMPT, 40, charseq.get_sampler("argmax"))[0]
    sampled = charseq.generate(model, VOCAB, PROMPT, 40, rng=np.random.default_rng(0),
                               decoding=charseq.Decoding(sampler=sampler, temperature=1.0))[0]
    assert sampled != argmax  # the model is not so sure that any sampler is greedy anyway

    api = charseq.generate(model, VOCAB, PROMPT, rng=np.random.default_rng(0),
                           decoding=charseq.Decoding(sampler=sampler, temperature=0, length=40))[0]
    cli = run_cli("generate", path, "--prime", PROMPT, "--length", 40, "--sampler", sampler, "--temperature", 0)
    engine = Engine(model, VOCAB)
    r = request({"prompt": PROMPT, "max_tokens": 40, "temperature": 0, "charseq": {"sampler": sampler}})
    engine.submit(r.jobs)
    assert api == argmax and cli.stdout == PROMPT + argmax + "\n" and results(engine, r) == [[argmax]]


@pytest.mark.parametrize("settings, setting, words", [
    ({"temperature": -1}, "temperature", "0 for greedy decoding"),
    ({"temperature": float("nan")}, "temperature", "positive number"),
    ({"repetition_penalty": 0}, "repetition_penalty", "above 0"),
    ({"length": -3}, "length", "length"),
    ({"num_samples": 0}, "num_samples", "num"),
])
def test_one_check_for_each_setting_speaks_the_askers_words(settings, setting, words):
    """The API names the keyword, the CLI the flag, the server the request's field."""
    with pytest.raises(charseq.DecodingError, match=words) as raised:
        charseq.Decoding(**settings)
    assert raised.value.setting == setting and "--" not in str(raised.value)
    flag = "--" + setting.replace("_", "-")
    cli = run_cli("generate", "x.npz", flag, str(next(iter(settings.values()))), ok=False)
    assert cli.exit_code == 2 and cli.stderr.count("\n") == 1
    if setting in ("temperature", "repetition_penalty"):  # the fields an OpenAI request carries
        field = {"repetition_penalty": "charseq.repetition_penalty"}.get(setting, setting)
        body = {"prompt": "a", "temperature": settings.get("temperature", 1.0)}
        if setting == "repetition_penalty":
            body["charseq"] = {"repetition_penalty": 0}
        with pytest.raises(BadRequest) as bad:
            request(body)
        assert bad.value.param == field


def _young_text_run(tmp_path, seed: int) -> charseq.Run:
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat and the dog ate the hat. " * 40)
    return charseq.Run.start(f"text:{text}", out=tmp_path / f"m{seed}.npz", epochs=1, hidden_size=16,
                             seq_len=16, seed=seed, force=True)


def test_the_closing_sample_of_a_text_run_is_sampled_with_the_runs_seed(tmp_path):
    run = _young_text_run(tmp_path, seed=5)
    run.fit()
    sample = run.sample(length=120)
    assert sample.temperature == 1.0 and not sample.items and sample.prime.startswith("the cat sat")
    again = charseq.generate(run.model, run.corpus.vocab, sample.prime, 120, rng=np.random.default_rng(5),
                             decoding=charseq.Decoding(temperature=1.0))[0]
    greedy = charseq.generate(run.model, run.corpus.vocab, sample.prime, 120, charseq.get_sampler("argmax"))[0]
    assert sample.texts == [again] and again != greedy
    others = {closing_sample(run.model, run.corpus, 120, seed, 16).texts[0] for seed in range(4)}
    assert len(others) > 1  # a draw: other seeds, other text


def test_the_closing_sample_of_a_run_of_items_is_new_items(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["anna", "bob", "carl", "dora", "emma", "finn"] * 10) + "\n")
    run = charseq.Run.start(f"lines:{names}", out=tmp_path / "n.npz", epochs=1, hidden_size=8, seed=1)
    run.fit()
    sample = run.sample()
    assert sample.items and sample.prime == "" and len(sample.texts) == 10
    assert isinstance(run.corpus, Corpus)


PLAIN_SAMPLER = '''
import numpy as np
from charseq import hookimpl


class Picky:
    """Argmax that refuses a temperature of 0 (its factory declares no types)."""

    def __init__(self, temperature=1.0):
        if float(temperature) <= 0:
            raise ValueError(f"Picky was handed temperature {temperature!r}")

    def __call__(self, logits, rng):
        return np.asarray(logits).argmax(axis=1)


@hookimpl
def register_samplers(register):
    register("picky", Picky)
'''


def test_a_plugin_sampler_is_never_handed_temperature_zero(plugin_site, tmp_path, monkeypatch):
    from conftest import install_fake_distribution

    install_fake_distribution(plugin_site, "throwaway-picky", PLAIN_SAMPLER, "[charseq]\npicky = throwaway_picky\n")
    model = random_model()
    path = save(tmp_path / "m.npz", Checkpoint(model, VOCAB))
    argmax = run_cli("generate", path, "--prime", PROMPT, "--length", 20, "--sampler", "argmax").stdout
    for args in (["--sampler", "picky:temperature=0"], ["--sampler", "picky", "--temperature", "0"]):
        assert run_cli("generate", path, "--prime", PROMPT, "--length", 20, *args).stdout == argmax
    r = request({"prompt": PROMPT, "max_tokens": 20, "charseq": {"sampler": "picky:temperature=0"}})
    engine = Engine(model, VOCAB)
    engine.submit(r.jobs)
    assert PROMPT + results(engine, r)[0][0] + "\n" == argmax


@pytest.mark.parametrize("sampler", ["nosuch", "top-k:k=0", "top-k:temperature=-1", "top-p:p=2"])
def test_temperature_zero_still_checks_the_sampler_it_sets_aside(tmp_path, sampler):
    path = save(tmp_path / "m.npz", Checkpoint(random_model(), VOCAB))
    cli = run_cli("generate", path, "--prime", PROMPT, "--sampler", sampler, "--temperature", 0, ok=False)
    assert cli.exit_code == 2 and cli.stderr.count("\n") == 1 and cli.stdout == ""
    with pytest.raises(BadRequest) as bad:
        request({"prompt": PROMPT, "temperature": 0, "charseq": {"sampler": sampler}})
    assert bad.value.param == "charseq.sampler"


def test_what_the_api_refuses_is_a_decoding_error_naming_the_setting():
    model = random_model()
    for decoding, setting in ((charseq.Decoding(sampler="nosuch"), "sampler"),
                              (charseq.Decoding(sampler="top-k", options={"k": 0}), "sampler"),
                              (charseq.Decoding(sampler="top-k:k=3", options={"k": 5}), "sampler")):
        with pytest.raises(charseq.DecodingError) as raised:
            charseq.generate(model, VOCAB, PROMPT, decoding=decoding)
        assert raised.value.setting == setting and "--" not in str(raised.value)
    with pytest.raises(charseq.DecodingError, match="not in the vocabulary: 'z'") as raised:
        charseq.generate(model, VOCAB, "abz", decoding=charseq.Decoding())
    assert raised.value.setting == "prime"
    with pytest.raises(charseq.DecodingError) as raised:
        charseq.Decoding(skip_unknown="yes")
    assert raised.value.setting == "skip_unknown"


def test_a_general_temperature_that_the_samplers_own_overrides_is_a_warning(tmp_path):
    path = save(tmp_path / "m.npz", Checkpoint(random_model(), VOCAB))
    both = run_cli("generate", path, "--prime", PROMPT, "--sampler", "top-k:temperature=0.5", "--temperature", 2,
                   "--seed", 1)
    own = run_cli("generate", path, "--prime", PROMPT, "--sampler", "top-k:temperature=0.5", "--seed", 1)
    assert both.stdout == own.stdout and own.stderr == ""
    assert both.stderr == "charseq: warning: --temperature is ignored: the sampler's own temperature=0.5 is used\n"


def test_a_temperature_too_high_is_quoted_as_given(alphabet_checkpoint):
    cli = run_cli("generate", alphabet_checkpoint, "--temperature", "1000001", ok=False)
    assert cli.exit_code == 2 and "at most 1e6, got 1000001.0" in cli.stderr
