"""The serving engine and the completions API without HTTP: requests that share one
batched stepper get exactly what each would get alone; limits and faults end only the
requests they concern."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import charseq
from charseq.serving.api import BadRequest, Limits, ServedModel, read_request
from charseq.decoding.generate import StopScanner, generate
from charseq.hooks.registry import get_registry
from charseq.serving.engine import Engine, JobFailed, collect
from serving_support import VOCAB, random_model, request, results, served  # noqa: F401

@contextlib.contextmanager
def running(engine: Engine):
    """The engine's thread, stopped however the block ends."""
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
        engine.join(10)


def greedy(model, prompt: str, length: int) -> str:
    return generate(model, VOCAB, prompt, length, lambda logits, rng: logits.argmax(axis=1))[0]


@pytest.mark.parametrize("spec", ["rnn", "gru:layers=2", "lstm:layers=2", "transformer:layers=2,heads=2,context=16"])
def test_a_greedy_request_is_what_generate_prints(spec):
    model = random_model(spec)
    engine = Engine(model, VOCAB)
    r = request({"prompt": "abc d", "max_tokens": 60, "temperature": 0})
    engine.submit(r.jobs)
    assert results(engine, r) == [[greedy(model, "abc d", 60)]]


@pytest.mark.parametrize("spec", ["gru:layers=2", "transformer:layers=2,heads=2,context=16"])
def test_requests_that_arrive_mid_flight_share_the_batch_and_get_what_they_would_alone(spec):
    """The transformer's rows hold its key/value caches, which slide past 16 characters."""
    model = random_model(spec)
    engine = Engine(model, VOCAB)
    prompts = ["abc", "j.j.j", "heed", "b", "ii ii", "fade"]
    reqs = []
    for k, prompt in enumerate(prompts):  # each arrives a few ticks after the one before
        reqs.append(request({"prompt": prompt, "max_tokens": 40 + 7 * k, "temperature": 0, "n": 1 + k % 2}))
        engine.submit(reqs[-1].jobs)
        for _ in range(5):
            engine.advance()
        assert len(engine.groups) == 1  # one stepper for all of them
    assert engine.groups[0].size == 16  # at most 9 sequences at once: the next power of two
    texts = results(engine, *reqs)
    for prompt, r, got in zip(prompts, reqs, texts):
        assert got == [greedy(model, prompt, r.max_tokens)] * r.n


def test_a_row_left_by_a_finished_request_starts_the_next_from_a_fresh_state():
    model = random_model("lstm")
    engine = Engine(model, VOCAB)
    first = request({"prompt": "aaaa", "max_tokens": 5, "temperature": 0})
    long = request({"prompt": "jjj", "max_tokens": 80, "temperature": 0})
    engine.submit(first.jobs + long.jobs)
    results(engine, first)
    second = request({"prompt": "bbb", "max_tokens": 30, "temperature": 0})  # takes first's row
    engine.submit(second.jobs)
    assert results(engine, second, long) == [[greedy(model, "bbb", 30)], [greedy(model, "jjj", 80)]]


def test_the_batch_shrinks_when_requests_leave_and_the_rest_go_on_unchanged():
    model = random_model()
    engine = Engine(model, VOCAB)
    short = request({"prompt": "ab", "max_tokens": 3, "temperature": 0, "n": 7})
    keep = request({"prompt": "c.d", "max_tokens": 50, "temperature": 0})
    engine.submit(short.jobs + keep.jobs)
    results(engine, short)
    engine.advance()
    assert engine.groups[0].size == 1
    assert results(engine, keep) == [[greedy(model, "c.d", 50)]]


class Unbatchable:
    """A plugin's model whose stepper has no assignable state: each request runs alone."""

    def __init__(self, model):
        self.inner = model
        self.name = "wrapped"

    def stepper(self, batch_size):
        inner = self.inner.stepper(batch_size)

        class Step:
            def __call__(self, ids):
                return inner(ids)

            def feed(self, x):
                return inner.feed(x)

        return Step()

    def state_shape(self, batch_size):
        return self.inner.state_shape(batch_size)


def test_a_model_whose_state_cannot_be_set_is_served_one_request_per_stepper():
    model = random_model()
    engine = Engine(Unbatchable(model), VOCAB)  # type: ignore[arg-type]
    assert not engine.shared
    a = request({"prompt": "abc", "max_tokens": 30, "temperature": 0})
    b = request({"prompt": "ggg", "max_tokens": 20, "temperature": 0, "n": 2})
    engine.submit(a.jobs)
    engine.advance()
    engine.submit(b.jobs)
    engine.advance()
    assert len(engine.groups) == 2
    assert results(engine, a, b) == [[greedy(model, "abc", 30)], [greedy(model, "ggg", 20)] * 2]


def test_a_seed_repeats_a_sample_and_n_samples_differ():
    model = random_model()
    texts = []
    for _ in range(2):
        engine = Engine(model, VOCAB)
        r = request({"prompt": "a", "max_tokens": 40, "n": 3, "seed": 11, "temperature": 1.5})
        engine.submit(r.jobs)
        texts.append(results(engine, r)[0])
    assert texts[0] == texts[1]
    assert len(set(texts[0])) == 3


def test_stops_end_each_choice_and_say_why():
    model = random_model()
    full = greedy(model, "abc", 60)
    stop = full[20:23]
    engine = Engine(model, VOCAB)
    r = request({"prompt": "abc", "max_tokens": 60, "temperature": 0, "stop": ["zzz_never", stop]})
    engine.submit(r.jobs)
    [got] = collect_now(engine, r)
    assert got.text == full[: full.index(stop)] and got.finish_reason == "stop"
    r = request({"prompt": "abc", "max_tokens": 10, "temperature": 0, "stop": "zzz"})
    engine.submit(r.jobs)
    [got] = collect_now(engine, r)
    assert got.text == full[:10] and got.finish_reason == "length"


def collect_now(engine: Engine, r):
    """Run the engine in this thread until it is idle, then read the request's choices."""
    while engine.advance():
        pass
    return collect(r.output, r.choices, 1)


def test_a_model_of_items_starts_after_the_end_symbol_and_stops_at_it(alphabet_checkpoint):
    model = random_model("gru")
    end = "\n"
    engine = Engine(model, VOCAB)
    r = request({"prompt": "ab", "max_tokens": 200, "n": 4, "seed": 1}, item_end=end)
    assert r.jobs[0].stops == (end,)
    assert VOCAB.decode(r.jobs[0].prompt_ids) == end + "ab"
    engine.submit(r.jobs)
    got = collect_now(engine, r)
    for choice in got:
        assert end not in choice.text
        assert choice.finish_reason == ("stop" if len(choice.text) < 200 else "length")
    with pytest.raises(BadRequest, match="end of an item"):
        request({"prompt": "a\nb"}, item_end=end)


def test_a_failing_sampler_fails_its_request_only(monkeypatch):
    model = random_model()
    engine = Engine(model, VOCAB)
    bad = request({"prompt": "abc", "max_tokens": 30, "temperature": 0})
    bad.jobs[0].sampler = lambda logits, rng: np.zeros(5, dtype=np.int64)  # the wrong shape
    bad.jobs[0].pool = None  # as a request with a seed: sampled alone
    good = request({"prompt": "abc", "max_tokens": 30, "temperature": 0})
    engine.submit(bad.jobs + good.jobs)
    with pytest.raises(JobFailed, match="sampler failed: the sampler returned an array of shape") as failed:
        results(engine, bad)
    assert failed.value.status == 500
    assert results(engine, good) == [[greedy(model, "abc", 30)]]


def test_time_limits_and_cancelled_requests_free_their_rows():
    model = random_model()
    engine = Engine(model, VOCAB)
    slow = request({"prompt": "abc", "max_tokens": 1000, "temperature": 0}, Limits(timeout=0.0))
    gone = request({"prompt": "abc", "max_tokens": 1000, "temperature": 0})
    engine.submit(slow.jobs + gone.jobs)
    engine.advance()
    gone.output.cancelled = True
    with pytest.raises(JobFailed, match="time limit") as failed:
        results(engine, slow)
    assert failed.value.status == 408
    engine.advance()
    assert engine.running == 0 and not engine.groups


def test_too_many_waiting_is_busy_and_stopping_ends_everything():
    engine = Engine(random_model(), VOCAB, max_batch=2, max_waiting=3)
    # Long enough that neither can finish between start() and stop(), however the threads are scheduled.
    first = request({"prompt": "a", "max_tokens": 4096, "n": 3})
    engine.submit(first.jobs)  # an empty queue always takes a request
    with pytest.raises(JobFailed, match="waiting") as busy:
        engine.submit(request({"prompt": "a", "n": 1}).jobs)
    assert busy.value.status == 429
    engine.advance()  # n=3 > max_batch=2: it runs alone rather than never
    assert engine.running == 3
    queued = request({"prompt": "b", "max_tokens": 4096, "n": 2})
    engine.submit(queued.jobs)
    engine.start()
    engine.stop()
    engine.join(10)
    for r in (first, queued):
        with pytest.raises(JobFailed, match="shutting down") as stopped:
            collect(r.output, r.choices, 10)
        assert stopped.value.status == 503
    with pytest.raises(JobFailed, match="shutting down"):
        engine.submit(request({"prompt": "a"}).jobs)


def test_the_engine_thread_serves_concurrent_readers():
    model = random_model()
    engine = Engine(model, VOCAB)
    with running(engine):
        reqs = [request({"prompt": p, "max_tokens": 50, "temperature": 0}) for p in ("a", "bb", "ccc", "d d")]
        for r in reqs:
            engine.submit(r.jobs)
        for prompt, r in zip(("a", "bb", "ccc", "d d"), reqs):
            assert [c.text for c in collect(r.output, 1, 30)] == [greedy(model, prompt, 50)]


@pytest.mark.parametrize("stops,chars,out,done", [
    (("ab",), "xxabyy", "xx", True),
    (("ab", "b"), "xab", "x", True),  # "ab" began first
    (("abc", "b"), "xab", "xa", True),
    (("abc",), "xabd", "xabd", False),  # held back while it could still be a stop, then let go
    (("\n\n",), "a\nb\n\n", "a\nb", True),
])
def test_a_stop_scanner_cuts_at_the_first_stop(stops, chars, out, done):
    scanner = StopScanner(stops)
    text = "".join(scanner.feed(c) for c in chars) + scanner.flush()
    assert (text, scanner.done) == (out, done)


@pytest.mark.parametrize("body,param,words", [
    ([], None, "JSON object"),
    ({"prompt": "abc", "bogus": 1}, "bogus", "unrecognized request argument supplied: bogus"),
    ({"prompt": "xyz"}, "prompt", "'x', 'y', 'z'"),
    ({"prompt": ""}, "prompt", "at least one character"),
    ({"prompt": [1, 2]}, "prompt", "token ids"),
    ({"prompt": "a" * 101}, "prompt", "at most 100"),
    ({"prompt": "a", "max_tokens": 51}, "max_tokens", "between 0 and 50"),
    ({"prompt": "a", "max_tokens": "5"}, "max_tokens", "whole number"),
    ({"prompt": "a", "n": 5}, "n", "between 1 and 4"),
    ({"prompt": ["a", "b", "c"], "n": 2}, "n", "6 choices"),
    ({"prompt": "a", "temperature": -1}, "temperature", "between 0 and 1e6"),
    ({"prompt": "a", "temperature": "hot"}, "temperature", "must be a number"),
    # values quoted as the client wrote them, in JSON, exactly
    ({"prompt": "a", "top_p": 1.0000001}, "top_p", "got 1.0000001"),
    ({"prompt": "a", "logprobs": True}, "logprobs", "got true"),
    ({"prompt": "a", "top_p": -0.1}, "top_p", "from 0 (greedy) to 1"),
    ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"prompt": "a", "stop": ""}, "stop", "must not be empty"),
    ({"prompt": "a", "seed": -3}, "seed", "0 or more"),
    ({"prompt": "a", "stream": "yes"}, "stream", "true or false"),
    ({"prompt": "a", "logprobs": 6}, "logprobs", "from 0 to 5 (as OpenAI's)"),
    ({"prompt": "a", "logprobs": 2.5}, "logprobs", "whole number from 0 to 5"),
    ({"prompt": "a", "frequency_penalty": 1}, "frequency_penalty", "charseq.repetition_penalty"),
    ({"prompt": "a", "model": 4}, "model", "model must be text"),
    ({"prompt": "a", "charseq": {"sampler": "nope"}}, "charseq.sampler", "nope"),
    ({"prompt": "a", "charseq": {"sampler": "top-k:k=0"}}, "charseq.sampler", "top-k"),
    ({"prompt": "a", "charseq": {"sampler": "top-k"}, "top_p": 0.5}, "top_p", "sampler's own options"),
    ({"prompt": "a", "charseq": {"colour": 1}}, "charseq.colour", "no field 'colour'"),
    ({"prompt": "a", "charseq": {"repetition_penalty": 0}}, "charseq.repetition_penalty", "above 0"),
    ({"prompt": "a", "charseq": {"repetition_penalty": 1e-300}}, "charseq.repetition_penalty", "from 1e-06 to 1e+06"),
    ({"prompt": "a", "charseq": {"repetition_window": 0}}, "charseq.repetition_window", "at least 1"),
    ({"prompt": "a", "charseq": {"sampler": "top-k:k=" + "9" * 5000}}, "charseq.sampler", "5,000 digits"),
    ({"prompt": "a", "charseq": {"options": {"k": 3}}}, "charseq.options", "name the sampler"),
    ({"prompt": "a", "charseq": []}, "charseq", "must be an object"),
    ({"prompt": "a", "charseq": False}, "charseq", "must be an object"),
    ({"prompt": "a", "logprobs": False}, "logprobs", "whole number from 0 to 5"),
    ({"prompt": "a", "best_of": True}, "best_of", "not supported"),
    ({"prompt": "a", "stream_options": {"include_usage": "no"}}, "stream_options.include_usage", "true or false"),
    ({"prompt": "a", "stream_options": {"colour": 1}}, "stream_options", "include_usage"),
])
def test_a_bad_request_names_its_field(body, param, words):
    with pytest.raises(BadRequest) as refused:
        request(body, Limits(max_tokens=50, max_choices=4, max_prompt=100))
    assert refused.value.param == param
    assert words in str(refused.value)
    assert refused.value.status == 400


def test_top_p_of_0_is_greedy_as_a_temperature_of_0_is_in_the_server_the_api_and_the_cli(tmp_path):
    """OpenAI accepts top_p 0; it is the top-p sampler's p of 0, the most likely symbol alone,
    whatever the temperature, and the CLI's --sampler top-p:p=0 and the API's agree."""
    from charseq.checkpoints.format import Checkpoint, save
    from conftest import run_cli

    model = random_model()
    expected = greedy(model, "abc d", 40)
    engine = Engine(model, VOCAB)
    reqs = [request({"prompt": "abc d", "max_tokens": 40, "top_p": 0, **more})
            for more in ({}, {"temperature": 1.5}, {"seed": 3, "temperature": 2})]
    reqs.append(request({"prompt": "abc d", "max_tokens": 40, "charseq": {"sampler": "top-p:p=0"}}))
    for r in reqs:
        engine.submit(r.jobs)
    assert results(engine, *reqs) == [[expected]] * 4
    assert generate(model, VOCAB, "abc d", 40, "top-p:p=0", rng=1, temperature=3.0) == [expected]
    path = save(tmp_path / "m.npz", Checkpoint(model, VOCAB))
    printed = run_cli("generate", path, "--prime", "abc d", "--length", 40, "--sampler", "top-p:p=0", "--temperature", 2)
    assert printed.stdout == "abc d" + expected + "\n"


def test_a_server_of_one_model_answers_to_any_model_name():
    model = random_model()
    engine = Engine(model, VOCAB)
    reqs = [request({"prompt": "abc", "max_tokens": 20, "temperature": 0, "model": name})
            for name in ("m", "gpt-3.5-turbo-instruct", "", "x" * 10_000)]
    for r in reqs:
        engine.submit(r.jobs)
    assert results(engine, *reqs) == [[greedy(model, "abc", 20)]] * 4


def test_openai_fields_choose_the_sampler():
    def sampler(body):
        return type(request({"prompt": "a", **body}).jobs[0].sampler).__name__

    assert sampler({"temperature": 0}) == "Argmax"
    assert sampler({"temperature": 0, "charseq": {"sampler": "top-k:k=3"}}) == "Argmax"  # 0 is greedy, always
    assert sampler({}) == "Temperature"
    assert sampler({"top_p": 0.9}) == "TopP"
    assert sampler({"charseq": {"sampler": "min-p:p=0.1"}, "temperature": 0.7}) == "MinP"
    job = request({"prompt": "a", "charseq": {"sampler": "top-k", "options": {"k": 3}}, "temperature": 0.5}).jobs[0]
    assert (job.sampler.k, job.sampler.temperature) == (3, 0.5)
    unknown = request({"prompt": "aq", "charseq": {"skip_unknown": True}})
    assert unknown.prompts == ["a"]


def test_the_checkpoint_path_serves_a_trained_model(alphabet_checkpoint):
    saved = charseq.load(alphabet_checkpoint)
    engine = Engine(saved.model, saved.vocab)
    r = read_request({"prompt": "ABC", "max_tokens": 23, "temperature": 0}, ServedModel("a", saved.vocab,
                                                                                        get_registry()), Limits())
    engine.submit(r.jobs)
    assert results(engine, r) == [["DEFGHIJKLMNOPQRSTUVWXYZ"]]


def test_a_seeded_request_gets_the_same_text_alone_and_among_others():
    model = random_model("lstm:layers=2")
    alone = Engine(model, VOCAB)
    r = request({"prompt": "be", "max_tokens": 80, "seed": 5, "n": 2})
    alone.submit(r.jobs)
    expected = results(alone, r)
    crowded = Engine(model, VOCAB)
    others = [request({"prompt": p, "max_tokens": 60 + 9 * k}) for k, p in enumerate(["a", "jj", "c.", "dd d"])]
    for other in others[:2]:
        crowded.submit(other.jobs)
    crowded.advance()
    r = request({"prompt": "be", "max_tokens": 80, "seed": 5, "n": 2})
    crowded.submit(r.jobs)
    for other in others[2:]:
        crowded.submit(other.jobs)
    got = results(crowded, r, *others)
    assert got[0] == expected[0]
    assert [len(texts[0]) for texts in got[1:]] == [60, 69, 78, 87]


def test_requests_without_a_seed_are_sampled_in_one_call():
    model = random_model()
    engine = Engine(model, VOCAB)
    calls = []
    reqs = [request({"prompt": "a", "max_tokens": 20, "n": 2}) for _ in range(3)]
    sampler = reqs[0].jobs[0].sampler
    spy = lambda logits, rng: calls.append(len(logits)) or sampler(logits, rng)  # noqa: E731
    for r in reqs:
        r.jobs[0].sampler = spy
        engine.submit(r.jobs)
    texts = results(engine, *reqs)
    assert calls == [6] * 20
    assert len({t for texts_of in texts for t in texts_of}) == 6  # six different samples


def test_a_fault_inside_the_engine_fails_the_running_requests_and_the_engine_goes_on(monkeypatch):
    model = random_model()
    engine = Engine(model, VOCAB)
    broken = request({"prompt": "abc", "max_tokens": 30})
    original = Engine._tick
    monkeypatch.setattr(Engine, "_tick", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    with running(engine):
        engine.submit(broken.jobs)
        with pytest.raises(JobFailed, match="the engine failed: RuntimeError: boom") as failed:
            collect(broken.output, 1, 10)
        assert failed.value.status == 500
        monkeypatch.setattr(Engine, "_tick", original)
        later = request({"prompt": "abc", "max_tokens": 30, "temperature": 0})
        engine.submit(later.jobs)
        assert [c.text for c in collect(later.output, 1, 10)] == [greedy(model, "abc", 30)]


def test_what_asks_for_nothing_is_accepted_and_the_default_length_keeps_to_the_limit():
    r = request({"prompt": "a", "logprobs": None, "best_of": 1, "presence_penalty": 0.0, "frequency_penalty": 0,
                 "logit_bias": {}, "suffix": "", "user": "me", "charseq": None, "stream_options": None},
                Limits(max_tokens=10))
    assert r.max_tokens == 10  # 256 when not given, but never past the server's limit


def test_a_sampler_that_exits_fails_its_request_and_the_engine_thread_lives_on():
    model = random_model()
    engine = Engine(model, VOCAB)
    with running(engine):
        bad = request({"prompt": "abc", "max_tokens": 30, "seed": 1})

        def leave(logits, rng):
            raise SystemExit(3)

        bad.jobs[0].sampler = leave
        engine.submit(bad.jobs)
        with pytest.raises(JobFailed, match="SystemExit"):
            collect(bad.output, 1, 10)
        assert engine.alive
        later = request({"prompt": "abc", "max_tokens": 30, "temperature": 0})
        engine.submit(later.jobs)
        assert [c.text for c in collect(later.output, 1, 10)] == [greedy(model, "abc", 30)]


def test_what_a_request_sent_is_quoted_back_cut_short():
    """A 900 KB field name or model name is not echoed whole (twice) in the error."""
    from charseq.serving.api import error_body

    for body in ({"prompt": "a", "x" * 900_000: 1}, {"prompt": "a", "logprobs": "m" * 900_000},
                 {"prompt": "a", "charseq": {"y" * 900_000: 1}}):
        with pytest.raises(BadRequest) as refused:
            request(body, Limits(max_tokens=50, max_choices=4, max_prompt=100))
        error = error_body(str(refused.value), refused.value.param, refused.value.status)["error"]
        assert len(error["message"]) <= 2000 and (error["param"] is None or len(error["param"]) <= 200)

