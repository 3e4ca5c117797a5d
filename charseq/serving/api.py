"""OpenAI's completions API, as far as its concepts hold for a character model: a request
body read into engine jobs, and the responses and stream chunks its clients expect.

A token is a character here: ``max_tokens`` counts characters and ``usage`` counts them.
``temperature: 0`` is greedy decoding (the argmax sampler), as in OpenAI's API;
``top_p`` below 1 is the top-p sampler, whose p of 0 is greedy too. charseq's own samplers
and options travel in an extra field, ``"charseq": {"sampler": "top-k:k=20",
"repetition_penalty": 1.2}``, which the official client sends with ``extra_body``.
``logprobs`` (and with ``echo``, the prompt's) are the model's own log-probabilities, before
the sampler's temperature or filter, as OpenAI reports them. Anything the model cannot do
(logit biases, suffixes) is refused by name rather than ignored. A server of one model
answers to any model name, as llama.cpp's does, and names its own in the response.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, overload

import numpy as np

from charseq.decoding.settings import Decoding, DecodingError
from charseq.errors import UsageError, Words, counted, spoken
from charseq.hooks.options import format_options
from charseq.hooks.registry import Registry, parse_spec
from charseq.serving.engine import Job, Output
from charseq.serving.logprobs import Scored
from charseq.data.vocab import Vocabulary, show_characters

DEFAULT_MAX_TOKENS = 256  # OpenAI's default is 16 tokens; a character is much less than a token
# OpenAI fields that have no meaning here, and the value that asks for nothing of them.
_UNSUPPORTED = {"suffix": ("",), "logit_bias": (), "best_of": (1,), "presence_penalty": (0,), "frequency_penalty": (0,)}
_IGNORED = ("user",)  # for the caller's own records
_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "echo", "logprobs",
           "stream_options", "charseq", *_UNSUPPORTED, *_IGNORED}
_CHARSEQ_FIELDS = {"sampler", "options", "repetition_penalty", "repetition_window", "skip_unknown"}
MAX_STOPS = 4  # as OpenAI
MAX_LOGPROBS = 5  # the likeliest characters reported with each, at most: OpenAI's cap for completions
STREAM_INTERVAL = 0.05  # seconds: a stream's text is sent in pieces at most this often (20 a second)


class BadRequest(Exception):
    """A request the server refuses: its HTTP status, the message, and the field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


@dataclass
class Limits:
    """What one request may ask for."""

    max_tokens: int = 4096  # characters per choice
    max_choices: int = 16  # prompts times n
    max_prompt: int = 16384  # characters per prompt
    timeout: float = 120.0  # seconds from arrival to the last character


@dataclass
class ServedModel:
    """What the server knows of its one model."""

    id: str
    vocab: Vocabulary
    registry: Registry
    item_end: str | None = None  # a model of items starts each prompt after it, and stops at it
    created: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # shown by GET /v1/models


@dataclass
class CompletionRequest:
    """A request read and checked: its prompts, and the jobs that answer it."""

    id: str
    created: int
    prompts: list[str]
    n: int
    max_tokens: int
    stream: bool
    echo: bool
    include_usage: bool
    jobs: list[Job]
    output: Output
    logprobs: int | None = None  # the likeliest characters reported with each; None: no log-probabilities

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    def prompt_of(self, index: int) -> str:
        return self.prompts[index // self.n]

    def first_offset(self, index: int) -> int:
        """Where a choice's first scored character lies in its prompt followed by its text:
        the prompt's start with echo (its characters are scored too), else the text's."""
        return 0 if self.echo else len(self.prompt_of(index))


# Field by field, in the order of OpenAI's reference, each check one line: long, not deep.
def read_request(body: Any, served: ServedModel, limits: Limits, output_wake: Any = None,
                 arrived: float | None = None) -> CompletionRequest:
    """The body of POST /v1/completions as jobs for the engine; BadRequest names what is wrong.
    `arrived` (time.monotonic()) starts the time limit: waiting for the body counts."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(f"unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])
    for name, allowed in _UNSUPPORTED.items():
        value = body.get(name)
        asks_nothing = value is None or not isinstance(value, bool) and (value in allowed or value == {})
        if not asks_nothing:
            hint = "; charseq.repetition_penalty is charseq's" if name.endswith("_penalty") else ""
            raise BadRequest(f"{name} is not supported by a character model{hint}", name)
    model = body.get("model")
    if model is not None and not isinstance(model, str):  # any name: the server has one model, named in the answer
        raise BadRequest(f"model must be text, got {_shown(model)}", "model")
    extra = {} if body.get("charseq") is None else body["charseq"]
    if not isinstance(extra, dict):
        raise BadRequest("charseq must be an object, such as {\"sampler\": \"top-k:k=20\"}", "charseq")
    unknown = sorted(set(extra) - _CHARSEQ_FIELDS)
    if unknown:
        raise BadRequest(f"charseq has no field {unknown[0]!r}; its fields are {', '.join(sorted(_CHARSEQ_FIELDS))}",
                         f"charseq.{unknown[0]}")

    prompts = _prompts(body.get("prompt"), served, limits, bool(_flag(extra, "skip_unknown", "charseq.skip_unknown")))
    n = _integer(body, "n", 1, 1, limits.max_choices)
    if len(prompts) * n > limits.max_choices:
        raise BadRequest(f"{len(prompts)} prompts times n={n} make {len(prompts) * n} choices; this server allows "
                         f"at most {limits.max_choices} per request", "n")
    max_tokens = _integer(body, "max_tokens", min(DEFAULT_MAX_TOKENS, limits.max_tokens), 0, limits.max_tokens)
    stops = _stops(body.get("stop"))
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise BadRequest(f"seed must be a whole number of 0 or more, got {_shown(seed)}", "seed")
    stream = bool(_flag(body, "stream", "stream"))
    echo = bool(_flag(body, "echo", "echo"))
    logprobs = _logprobs(body.get("logprobs"))
    options = {} if body.get("stream_options") is None else body["stream_options"]
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise BadRequest("stream_options must be an object such as {\"include_usage\": true}", "stream_options")
    include_usage = _flag(options, "include_usage", "stream_options.include_usage")
    decoding = _decoding(body, extra, served.registry, n, max_tokens,
                         stops + ((served.item_end,) if served.item_end is not None else ()))

    output = Output(len(prompts) * n, output_wake, STREAM_INTERVAL if stream else math.inf)
    # Without a seed or a penalty, a request samples alike with others of the same sampler:
    # the engine samples all of them in one call.
    alike = ("argmax",) if decoding.greedy else (decoding.sampler, json.dumps(dict(decoding.options), sort_keys=True,
                                                                               default=str), decoding.temperature)
    pool = None if seed is not None or decoding.repetition_penalty != 1.0 else alike
    deadline = (time.monotonic() if arrived is None else arrived) + limits.timeout
    jobs = []
    for index, prompt in enumerate(prompts):
        if served.item_end is not None:
            prompt = served.item_end + prompt
        rng = np.random.default_rng(None if seed is None else (seed if len(prompts) == 1 else [seed, index]))
        jobs.append(Job(served.vocab.encode(prompt).astype(np.intp), decoding,
                        decoding.make_sampler(served.registry, warn=False), rng, output, index * n, deadline, pool,
                        alone=seed is not None, logprobs=logprobs,
                        score_from=None if not echo or logprobs is None else int(served.item_end is not None)))
    return CompletionRequest(f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), prompts, n, max_tokens, stream, echo,
                             include_usage, jobs, output, logprobs)


def _logprobs(value: Any) -> int | None:
    """OpenAI's legacy ``logprobs``: how many of the likeliest characters to report with
    each character's own log-probability (0: only its own), or None for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LOGPROBS:
        raise BadRequest(f"logprobs must be a whole number from 0 to {MAX_LOGPROBS} (as OpenAI's), the likeliest "
                         f"characters to report with each; got {_shown(value)}", "logprobs")
    return value


def _prompts(prompt: Any, served: ServedModel, limits: Limits, skip_unknown: bool) -> list[str]:
    if prompt is None:
        prompt = ""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("prompt must be text or a list of texts (token ids mean nothing to a character model)",
                         "prompt")
    checked = []
    for text in prompts:
        if len(text) > limits.max_prompt:
            raise BadRequest(f"the prompt has {len(text):,} characters; this server takes at most "
                             f"{limits.max_prompt:,}", "prompt")
        unknown = served.vocab.unknown(text)
        if unknown and not skip_unknown:
            raise BadRequest(f"the prompt has characters the model does not know: {show_characters(unknown)} "
                             "(charseq.skip_unknown leaves them out)", "prompt", code="unknown_character")
        if unknown:
            text = "".join(c for c in text if c in served.vocab)
        if served.item_end is not None and served.item_end in text:
            raise BadRequest(f"the prompt holds the end of an item ({served.item_end!r}); this model's prompt "
                             "starts one item", "prompt")
        if not text and served.item_end is None:
            raise BadRequest("the prompt must have at least one character the model knows: a model of running "
                             "text continues something", "prompt")
        checked.append(text)
    return checked


def _decoding(body: dict[str, Any], extra: dict[str, Any], registry: Registry, n: int, max_tokens: int,
              stops: tuple[str, ...]) -> Decoding:
    """The request's Decoding, checked by its rules: the sampler is charseq.sampler, or
    chosen by OpenAI's temperature and top_p (a temperature of 0 is greedy, whatever the
    sampler; so is a top_p of 0, the top-p sampler's p of 0)."""
    top_p = _number(body, "top_p", 1.0, "top_p")
    if not 0 <= top_p <= 1:
        raise BadRequest(f"top_p must be from 0 (greedy) to 1, got {_shown(top_p)}", "top_p")
    spec, options = extra.get("sampler"), extra.get("options")
    if spec is None and options is not None:
        raise BadRequest("charseq.options are a sampler's options: name the sampler in charseq.sampler",
                         "charseq.options")
    if spec is not None and not isinstance(spec, str):
        raise BadRequest("charseq.sampler must be text, such as \"top-k:k=20\"", "charseq.sampler")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("charseq.options must be an object of the sampler's options", "charseq.options")
    if spec is not None and top_p != 1:
        raise BadRequest("top_p chooses the top-p sampler; with charseq.sampler give the sampler's own options",
                         "top_p")
    if spec is None:
        spec, options = ("top-p", {"p": top_p}) if top_p < 1 else ("temperature", {})
    try:
        with spoken(FIELDS):
            decoding = Decoding(spec, options or {}, _number(body, "temperature", None, "temperature"), max_tokens, n,
                                stops, _number(extra, "repetition_penalty", 1.0, "charseq.repetition_penalty"),
                                extra.get("repetition_window"))
            decoding.make_sampler(registry, warn=False)  # refused now, with the request, not in the engine
    except DecodingError as exc:
        raise BadRequest(str(exc), FIELDS.label(exc.setting)) from None
    except UsageError as exc:  # the sampler's plugin refused its name or options
        raise BadRequest(str(exc), "charseq.sampler") from None
    except OverflowError:  # a whole number too large for the float option it is given for
        raise BadRequest("a sampler option has too many digits for a number this server takes",
                         "charseq.options") from None
    return decoding


class _Fields(Words):
    """A decoding setting as the request field that holds it, for messages and `param`."""

    NAMES = {"length": "max_tokens", "num_samples": "n", "prime": "prompt", "sampler": "charseq.sampler",
             "options": "charseq.options", "repetition_penalty": "charseq.repetition_penalty",
             "repetition_window": "charseq.repetition_window", "skip_unknown": "charseq.skip_unknown"}

    def label(self, name: str) -> str:
        return self.NAMES.get(name, name)

    def setting(self, name: str, value: Any = Words.NOTHING) -> str:
        return self.label(name) if value is Words.NOTHING else f"{self.label(name)}: {json.dumps(value)}"


FIELDS = _Fields()


def _stops(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("stop must be text or a list of texts", "stop")
    if len(stops) > MAX_STOPS:
        raise BadRequest(f"stop takes at most {MAX_STOPS} texts, got {len(stops)}", "stop")
    return tuple(stops)


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be a whole number, got {_shown(value)}", name)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high:,} on this server, got {_shown(value)}", name)
    return value


@overload
def _number(body: dict[str, Any], name: str, default: float, param: str) -> float: ...
@overload
def _number(body: dict[str, Any], name: str, default: None, param: str) -> float | None: ...
def _number(body: dict[str, Any], name: str, default: float | None, param: str) -> float | None:
    """The field `name` of `body` as a finite float, `default` when absent; else a BadRequest for `param`."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{param} must be a number, got {_shown(value)}", param)
    try:
        number = float(value)
    except OverflowError:  # a whole number of hundreds of digits: past what a float holds
        raise BadRequest(f"{param} has too many digits for a number this server takes", param) from None
    if not math.isfinite(number):
        raise BadRequest(f"{param} must be a finite number, got {_shown(value)}", param)
    return number


def _flag(body: dict[str, Any], name: str, param: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{param} must be true or false, got {_shown(value)}", param)
    return bool(value)


# -- responses ---------------------------------------------------------------------------


def error_body(message: str, param: str | None = None, status: int = 400, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape; its clients raise the matching exception from the status."""
    kind = {401: "authentication_error", 404: "invalid_request_error", 408: "timeout", 413: "invalid_request_error",
            429: "rate_limit_error"}.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": _cut(message, 2000), "type": kind, "param": None if param is None else _cut(param, 200),
                      "code": code}}


def _cut(text: str, longest: int) -> str:
    """Text from a request, quoted back, cut short: the client has it already."""
    return text if len(text) <= longest else f"{text[: longest - 30]}... ({len(text):,} characters)"


def completion_body(request: CompletionRequest, texts: list[str], reasons: list[str], model_id: str,
                    scored: list[list[Scored]] | None = None) -> dict[str, Any]:
    """The whole answer; `scored`, each choice's characters' log-probabilities (the prompt's
    first with echo), when the request asked for them."""
    choices = [{"text": (request.prompt_of(i) if request.echo else "") + text, "index": i,
                "logprobs": None if scored is None else logprobs_body(scored[i], request.first_offset(i)),
                "finish_reason": reason} for i, (text, reason) in enumerate(zip(texts, reasons))]
    return {"id": request.id, "object": "text_completion", "created": request.created, "model": model_id,
            "choices": choices, "usage": usage(request, sum(len(t) for t in texts))}


def logprobs_body(scored: list[Scored], offset: int) -> dict[str, Any]:
    """OpenAI's legacy ``logprobs`` of some characters, the first at `offset` in the prompt
    followed by the text (so that with echo, in the choice's text)."""
    offsets = []
    for each in scored:
        offsets.append(offset)
        offset += len(each.char)
    return {"tokens": [each.char for each in scored], "token_logprobs": [each.logprob for each in scored],
            "top_logprobs": [each.top for each in scored], "text_offset": offsets}


def chunk_body(request: CompletionRequest, model_id: str, choices: list[dict[str, Any]],
               usage_of: dict[str, int] | None = None) -> dict[str, Any]:
    """One server-sent event of a stream: new text of some choices, or (with no choices) the usage."""
    body: dict[str, Any] = {"id": request.id, "object": "text_completion", "created": request.created,
                            "model": model_id, "choices": choices}
    if request.include_usage:
        body["usage"] = usage_of
    return body


def usage(request: CompletionRequest, completion_characters: int) -> dict[str, int]:
    prompt = sum(len(p) for p in request.prompts)  # as OpenAI: once, whatever n
    return {"prompt_tokens": prompt, "completion_tokens": completion_characters,
            "total_tokens": prompt + completion_characters}


def served_model(checkpoint: Any, model_id: str, registry: Registry, limits: Limits, batched: bool,
                 created: int = 0) -> ServedModel:
    """What the server says of a loaded checkpoint (GET /v1/models, and the page)."""
    model = checkpoint.model
    samplers = registry.all("sampler")
    info = {"model": model.name, "options": model.options(), "hidden_size": model.hidden_size,
            "description": describe_checkpoint(checkpoint),
            "vocabulary_size": len(checkpoint.vocab), "vocabulary": list(checkpoint.vocab.symbols),
            "item_end": checkpoint.item_end, "samplers": list(samplers),
            # each sampler's declared options, as `charseq samplers --json` lists them, and
            # whether it takes options beyond those (**options)
            "sampler_details": [{"name": name, "help": sampler.help, "plugin": sampler.plugin,
                                 "options": [option.to_json() for option in sampler.options()],
                                 "any_options": sampler.takes_any()} for name, sampler in samplers.items()],
            "batched": batched,
            "limits": {"max_tokens": limits.max_tokens, "max_choices": limits.max_choices,
                       "max_prompt": limits.max_prompt, "timeout": limits.timeout},
            "charseq_version": checkpoint.charseq_version}
    return ServedModel(model_id, checkpoint.vocab, registry, checkpoint.item_end, created, info)


def describe_checkpoint(checkpoint: Any) -> str:
    """The model in words, for the page: "gru, 2 layers of 192 units, trained on
    tinyshakespeare.txt for 20 epochs; 65 symbols" (what is not recorded is left out)."""
    model = checkpoint.model
    options = dict(model.options())
    layers = options.pop("layers", None)
    shape = (f"{counted(layers, 'layer')} of {counted(model.hidden_size, 'unit')}" if isinstance(layers, int)
             else counted(model.hidden_size, "unit"))
    words = f"{model.name}{f' ({format_options(options)})' if options else ''}, {shape}"
    run = checkpoint.run or {}
    corpus = run.get("corpus_source") or run.get("corpus") or checkpoint.corpus
    if isinstance(corpus, str) and corpus:
        name, arg = parse_spec(corpus)
        where = PurePath(arg).name if arg and name in ("text", "lines") else corpus if arg else f"the {name} corpus"
        words += f", trained on {where}"
        epoch, step = checkpoint.progress.get("epoch"), checkpoint.progress.get("step")
        if isinstance(epoch, int) and epoch > 0:
            words += f" for {counted(epoch, 'epoch')}"
        elif isinstance(step, int) and step > 0:
            words += f" for {counted(step, 'step')}"
    words += f"; {counted(len(checkpoint.vocab), 'symbol')}"
    return words + (", one item per line" if checkpoint.item_end is not None else "")


def _shown(value: Any, longest: int = 40) -> str:
    """A request's value in a message, cut short (a 4,000-digit number, a long text: the
    client has it already)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1:,} digits"  # (log10 2: no str() of it)
    try:  # as the client wrote it, in JSON (true, null, "text"), not as Python shows it
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= longest else text[: longest - 3] + "..."
