"""Log-probabilities in the completions API (OpenAI's legacy ``logprobs``), without HTTP:
they are the model's own, before any sampling adjustment, as the model's stepper gives them
to a test that runs it alone; they come with each character of text, stops and batches
included, and with echo for the prompt, which is how a text is scored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charseq.serving import engine as engine_module
from charseq.serving.api import completion_body
from charseq.serving.engine import Engine, Gathered
from serving_support import VOCAB, random_model, request

ID = {char: i for i, char in enumerate(VOCAB.symbols)}.__getitem__
TOLERANCE = 1e-4  # float32 logits; a batch's arithmetic may differ from one row's in the last bits


def model_logprobs(model, text: str) -> np.ndarray:
    """The model's log-probabilities (len(text), V) of the character after each of `text`'s
    characters, from its own stepper, one row, computed here in float64."""
    step = model.stepper(1)
    rows = []
    for char in text:
        logits = np.asarray(step(np.array([ID(char)])), dtype=np.float64)[0]
        shifted = logits - logits.max()
        rows.append(shifted - math.log(np.exp(shifted).sum()))
    return np.array(rows)


def answer(engine: Engine, r) -> dict:
    """Drive the engine until the request is done; its response body, as the server sends it."""
    gathered = Gathered(r.choices)
    for _ in range(100_000):
        taken = r.output.take()
        if taken.error is not None:
            raise taken.error
        gathered.add(taken)
        if taken.done:
            return completion_body(r, gathered.texts, gathered.reasons, "m",
                                   None if r.logprobs is None else gathered.scored)
        engine.advance()
    raise AssertionError("the engine did not finish")


def run(body: dict, model=None, item_end: str | None = None) -> dict:
    engine = Engine(model or random_model(), VOCAB)
    r = request(body, item_end=item_end)
    engine.submit(r.jobs)
    return answer(engine, r)


@pytest.mark.parametrize("body", [
    {"temperature": 0},
    {"temperature": 2.5, "seed": 1},  # the temperature is the sampler's, not the model's
    {"charseq": {"sampler": "top-k:k=2"}, "seed": 2},  # nor is a filter
    {"charseq": {"repetition_penalty": 3.0}, "seed": 3},  # nor the penalty
])
def test_each_characters_logprob_is_the_models_own_log_softmax_before_sampling(body):
    model = random_model()
    prompt = "abc d"
    got = run({"prompt": prompt, "max_tokens": 30, "logprobs": 3, **body}, model)
    [choice] = got["choices"]
    text, logprobs = choice["text"], choice["logprobs"]
    assert "".join(logprobs["tokens"]) == text and len(text) == 30
    expected = model_logprobs(model, prompt + text)[len(prompt) - 1: -1]  # (30, V): what predicts each
    for k, char in enumerate(text):
        assert logprobs["token_logprobs"][k] == pytest.approx(expected[k, ID(char)], abs=TOLERANCE)
        top = logprobs["top_logprobs"][k]
        likeliest = np.argsort(-expected[k], kind="stable")[:3]
        assert list(top)[:3] == [VOCAB.symbols[i] for i in likeliest]  # most likely first
        assert list(top.values())[:3] == pytest.approx(expected[k, likeliest], abs=TOLERANCE)
        assert char in top and len(top) == (3 if char in list(top)[:3] else 4)  # its own, as OpenAI: up to N + 1
        assert math.fsum(math.exp(v) for v in top.values()) <= 1 + 1e-5
    assert logprobs["text_offset"] == list(range(len(prompt), len(prompt) + 30))  # in the prompt followed by the text


def test_greedy_text_is_the_top_choice_at_every_step_and_logprobs_0_gives_the_characters_own():
    got = run({"prompt": "hij", "max_tokens": 40, "temperature": 0, "logprobs": 0})
    logprobs = got["choices"][0]["logprobs"]
    for char, own, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
        assert top == {char: own} and own < 0
    greedy = run({"prompt": "hij", "max_tokens": 40, "temperature": 0, "logprobs": 5})["choices"][0]["logprobs"]
    for char, own, top in zip(greedy["tokens"], greedy["token_logprobs"], greedy["top_logprobs"]):
        assert len(top) == 5 and next(iter(top)) == char and own == max(top.values())


def test_echo_with_no_tokens_scores_the_prompt_itself():
    model = random_model()
    got = run({"prompt": ["abc d", "dcb a"], "max_tokens": 0, "echo": True, "logprobs": 2}, model)
    for prompt, choice in zip(["abc d", "dcb a"], got["choices"]):
        logprobs = choice["logprobs"]
        assert choice["text"] == prompt and logprobs["tokens"] == list(prompt)
        assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None  # nothing predicts it
        expected = model_logprobs(model, prompt)
        assert logprobs["token_logprobs"][1:] == pytest.approx(
            [expected[k - 1, ID(c)] for k, c in enumerate(prompt) if k], abs=TOLERANCE)
        assert logprobs["text_offset"] == list(range(len(prompt)))
    assert got["usage"]["completion_tokens"] == 0


def test_echo_scores_the_prompt_then_the_text_and_a_stop_cuts_both_alike():
    model = random_model()
    plain = run({"prompt": "abc", "max_tokens": 40, "temperature": 0}, model)["choices"][0]["text"]
    stop = plain[25:27]
    got = run({"prompt": "abc", "max_tokens": 40, "temperature": 0, "logprobs": 1, "echo": True, "n": 2,
               "stop": stop}, model)
    for choice in got["choices"]:
        logprobs = choice["logprobs"]
        assert choice["text"] == "abc" + plain[: plain.index(stop)] and choice["finish_reason"] == "stop"
        assert "".join(logprobs["tokens"]) == choice["text"]
        assert logprobs["text_offset"] == list(range(len(choice["text"])))
        expected = model_logprobs(model, choice["text"])
        assert logprobs["token_logprobs"][1:] == pytest.approx(
            [expected[k - 1, ID(c)] for k, c in enumerate(choice["text"]) if k], abs=TOLERANCE)


def test_a_model_of_items_scores_an_items_first_character_too():
    """Its prompt starts after the end symbol, which predicts the first character."""
    model = random_model("gru")
    got = run({"prompt": "bad", "max_tokens": 0, "echo": True, "logprobs": 1}, model, item_end="\n")
    logprobs = got["choices"][0]["logprobs"]
    expected = model_logprobs(model, "\nbad")
    assert logprobs["tokens"] == ["b", "a", "d"]
    assert logprobs["token_logprobs"] == pytest.approx([expected[k, ID(c)] for k, c in enumerate("bad")],
                                                       abs=TOLERANCE)


def test_requests_with_logprobs_share_the_batch_and_those_without_compute_none(monkeypatch):
    computed = []
    original = engine_module.log_softmax
    monkeypatch.setattr(engine_module, "log_softmax", lambda logits: computed.append(len(logits)) or original(logits))
    model = random_model()
    engine = Engine(model, VOCAB)
    plain = [request({"prompt": p, "max_tokens": 30, "temperature": 0, "n": 2}) for p in ("ab", "c d")]
    for r in plain:
        engine.submit(r.jobs)
    for _ in range(3):
        engine.advance()
    assert computed == []  # nothing for requests that ask for none
    scored = request({"prompt": "ab", "max_tokens": 30, "temperature": 0, "n": 2, "logprobs": 2})
    engine.submit(scored.jobs)
    engine.advance()
    assert len(engine.groups) == 1 and engine.groups[0].used == 6  # one batch, shared
    got = [answer(engine, r) for r in (scored, *plain)]
    assert [c["text"] for c in got[0]["choices"]] == [c["text"] for c in got[1]["choices"]]
    assert got[1]["choices"][0]["logprobs"] is None
    assert computed and set(computed) == {2}  # the scored request's rows only


class Masked:
    """A plugin's model that gives one symbol no chance at all: a logit of -inf."""

    def __init__(self, model, symbol: int):
        self.inner, self.symbol, self.name = model, symbol, "masked"

    def stepper(self, batch_size):
        inner, symbol = self.inner.stepper(batch_size), self.symbol

        class Step:
            def __call__(self, ids):
                logits = inner(ids).copy()
                logits[:, symbol] = -np.inf
                return logits

            def feed(self, x):
                return inner.feed(x)

        return Step()

    def state_shape(self, batch_size):
        return self.inner.state_shape(batch_size)


def test_a_symbol_the_model_rules_out_is_reported_as_minus_9999_in_valid_json():
    import json

    got = run({"prompt": "bab", "max_tokens": 3, "echo": True, "logprobs": 5, "temperature": 0},
              Masked(random_model(), ID("a")))
    logprobs = got["choices"][0]["logprobs"]
    assert logprobs["token_logprobs"][1] == -9999.0 and logprobs["token_logprobs"][2] > -100  # "a", then "b"
    json.dumps(got, allow_nan=False)  # no -Infinity, which no JSON client reads
