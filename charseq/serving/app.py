"""The HTTP face of `charseq serve`: an ASGI app (Starlette) over one Engine.

Routes: the web page (``/``, with its script and style, nothing loaded from elsewhere),
``/healthz``, ``/v1/models`` and ``/v1/completions`` (OpenAI's shapes, streaming as
server-sent events). With an API key set, every ``/v1`` route wants it as a bearer token.
What a request may ask for is charseq.serving.api'; how requests share the model is
charseq.serving.engine's. This module only moves bytes between them and the network, and
guards the server against clients that hold it: a time limit from a request's first byte
(headers included) and a cap on the request bodies held at once; the socket and the cap on
open connections are charseq.serving.connections'.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
# h11 as uvicorn uses it: taken through uvicorn, which the type checker knows as an optional package.

from charseq.serving.api import (BadRequest, CompletionRequest, Limits, ServedModel, chunk_body, completion_body,
                                 error_body, logprobs_body, read_request, usage)
from charseq.serving.engine import Engine, Gathered, JobFailed, describe

MAX_BODY_BYTES = 1 << 20
MAX_BODY_TOTAL_BYTES = 32 << 20  # the bodies of all requests being received at once
ARRIVED = "charseq.arrived"  # in a request's scope["state"]: when its first byte came (time.monotonic())
# The page and its files come from this server alone; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
               "/app.js": ("app.js", "text/javascript; charset=utf-8"),
               "/app.css": ("app.css", "text/css; charset=utf-8")}


@dataclass
class Service:
    """Everything the routes need: the model, its engine, the limits and the key."""

    served: ServedModel
    engine: Engine
    limits: Limits
    api_key: str | None = None
    max_body: int = MAX_BODY_BYTES
    max_body_total: int = MAX_BODY_TOTAL_BYTES
    # Without a key, only requests addressed to this machine by a loopback name or address
    # are answered: a web page elsewhere cannot reach the model through DNS rebinding.
    loopback_only: bool = True
    stopping: bool = False  # set on the first Ctrl-C or SIGTERM: requests still arriving are turned away
    receiving: int = 0  # bytes of the request bodies being received now, all requests together


def create_app(service: Service) -> Any:
    """The ASGI app; the caller starts and stops the engine."""
    page = {path: (resources.files("charseq.serving").joinpath("web").joinpath(name).read_bytes(), kind)
            for path, (name, kind) in _PAGE_FILES.items()}

    async def static(request: Request) -> Response:
        body, kind = page[request.url.path]
        return Response(body, media_type=kind, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        alive = service.engine.alive
        return _json({"status": "ok" if alive else "failed", "model": service.served.id,
                      "auth": service.api_key is not None, **describe(service.engine)}, 200 if alive else 503)

    async def models(request: Request) -> Response:
        if (refused := _refused(request, service)) is not None:
            return refused
        return _json({"object": "list", "data": [_model_entry(service.served)]})

    async def model(request: Request) -> Response:  # any name: the one model answers to it, as completions do
        if (refused := _refused(request, service)) is not None:
            return refused
        return _json(_model_entry(service.served))

    async def completions(request: Request) -> Response:
        return await _complete(request, service)

    routes = [Route(path, static) for path in _PAGE_FILES] + [
        Route("/healthz", healthz),
        Route("/v1/models", models),
        Route("/v1/models/{model:path}", model),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", _chat, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found, Exception: _failed})
    app.router.redirect_slashes = False  # /v1/completions/ is a 404 in JSON, not a redirect
    return _AddressedHere(app, service) if service.loopback_only else app


async def _complete(request: Request, service: Service) -> Response:
    """POST /v1/completions: the request read within its limits, its jobs submitted, and
    the text streamed as events or returned whole."""
    if (refused := _refused(request, service)) is not None:
        return refused
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()

    def wake() -> None:  # from the engine's thread
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:  # the loop has closed: nobody is waiting
            pass

    arrived = request.scope.get("state", {}).get(ARRIVED, time.monotonic())
    try:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise BadRequest("the request body must be JSON, sent with 'Content-Type: application/json'", None,
                             415)
        body = await _read_json(request, service, arrived + service.limits.timeout)
        completion = read_request(body, service.served, service.limits, wake, arrived)
        service.engine.submit(completion.jobs)
    except BadRequest as exc:
        return _error(exc, exc.HEADERS if isinstance(exc, _BodiesFull) else None)
    except JobFailed as exc:
        return _error(BadRequest(str(exc), None, exc.status), {"Retry-After": "1"} if exc.status == 429 else None)
    except ClientDisconnect:
        return Response(status_code=400)
    if completion.stream:
        return StreamingResponse(_events(completion, ready, service.served.id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    gathered = Gathered(completion.choices)
    try:
        async for taken in _taken(completion, ready, request):
            gathered.add(taken)
    except JobFailed as exc:
        return _error(BadRequest(str(exc), None, exc.status))
    return _json(completion_body(completion, gathered.texts, gathered.reasons, service.served.id,
                                 None if completion.logprobs is None else gathered.scored))


async def _chat(request: Request) -> Response:
    return _error(BadRequest("a character model completes text; it does not chat: use POST /v1/completions",
                             None, 404, "unknown_url"))

async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = (f"no route {request.method} {request.url.path}" if status == 404 else
               f"{request.url.path} does not take {request.method}")
    return _error(BadRequest(message, None, status, "unknown_url" if status == 404 else None))

async def _failed(request: Request, exc: Exception) -> Response:
    """A fault of the server's own: still an error in OpenAI's shape (the server logs it)."""
    return _error(BadRequest(f"the server failed: {type(exc).__name__}", None, 500))


class _AddressedHere:
    """Answers only requests whose Host is a loopback name or address (403 otherwise)."""

    def __init__(self, app: Any, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
            if not is_loopback(name.strip("[]")):
                response = _error(BadRequest(f"this server answers requests addressed to this machine (localhost, "
                                             f"127.0.0.1), not to {host!r}; a server for other machines needs an "
                                             "API key", None, 403))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _taken(completion: CompletionRequest, ready: asyncio.Event, request: Request | None = None,
                 poll: float = 1.0) -> AsyncIterator[Any]:
    """What the engine made for the request, as it comes; the request is cancelled if the
    reader goes away (a generator closed early, or a client that disconnected)."""
    output = completion.output
    ended = False
    try:
        while True:
            if request is None:  # a stream: Starlette cancels it when its client goes away
                await ready.wait()
            else:  # a whole answer: look for a client that went away every `poll` seconds
                try:
                    await asyncio.wait_for(ready.wait(), poll)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
            ready.clear()
            taken = output.take()
            ended = taken.done
            if taken.error is not None:
                raise taken.error
            yield taken
            if taken.done:
                return
    finally:
        if not ended:
            output.cancelled = True


async def _events(completion: CompletionRequest, ready: asyncio.Event, model_id: str) -> AsyncIterator[str]:
    """The request's text as server-sent events, OpenAI's chunks, then ``[DONE]``. With
    log-probabilities, each chunk has its characters'; an echoed prompt then comes with its
    own, in the choice's first chunk, once the model has read it."""
    made = 0
    scoring = completion.logprobs is not None
    to_echo = set(range(completion.choices)) if completion.echo and scoring else set()
    offsets = [completion.first_offset(i) for i in range(completion.choices)]
    if completion.echo and not scoring:
        yield _event(chunk_body(completion, model_id, [_choice(i, completion.prompt_of(i), None)
                                                       for i in range(completion.choices)]))
    try:
        async for taken in _taken(completion, ready):
            made += sum(len(text) for text in taken.texts.values())
            indices = sorted(set(taken.texts) | set(taken.finished) | set(taken.scored))
            choices = []
            for i in indices:
                text = taken.texts.get(i, "")
                if i in to_echo:  # its prompt's scores came first: the prompt goes with them
                    to_echo.discard(i)
                    text = completion.prompt_of(i) + text
                choice = _choice(i, text, taken.finished.get(i))
                if scoring:
                    scored = taken.scored.get(i, [])
                    choice["logprobs"] = logprobs_body(scored, offsets[i])
                    offsets[i] += len(text)
                choices.append(choice)
            if choices:
                yield _event(chunk_body(completion, model_id, choices))
    except JobFailed as exc:
        yield _event(error_body(str(exc), None, exc.status))
        return
    if completion.include_usage:
        yield _event(chunk_body(completion, model_id, [], usage(completion, made)))
    yield "data: [DONE]\n\n"


def _choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def _event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=True)}\n\n"  # ASCII: no raw line separators (U+2028) in a line


def _model_entry(served: ServedModel) -> dict[str, Any]:
    return {"id": served.id, "object": "model", "created": served.created, "owned_by": "charseq",
            "charseq": served.info}


def _refused(request: Request, service: Service) -> Response | None:
    """401 unless the request carries the server's API key (when it has one)."""
    if service.api_key is None:
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), service.api_key.encode()):
        return None
    message = "a valid API key is needed: send it as 'Authorization: Bearer KEY'"
    return _error(BadRequest(message, None, 401, "invalid_api_key"), {"WWW-Authenticate": "Bearer"})


class _BodiesFull(BadRequest):
    """A 503: the request bodies being received fill what the server holds at once; retry soon."""

    HEADERS = {"Retry-After": "1", "Connection": "close"}  # the rest of the body is not read


async def _read_json(request: Request, service: Service, deadline: float) -> Any:
    """The body as JSON: refused (413) past the size limit before it is all read, (503) when
    the bodies being received would hold more than the server takes at once, (408) when it
    has not all arrived by `deadline`, or (503) when the server stops meanwhile."""
    limit = service.max_body
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the request body has {int(declared):,} bytes; this server takes at most {limit:,}", None,
                         413)
    reading = asyncio.ensure_future(_receive(request, service))
    try:
        while not reading.done():
            await asyncio.wait({reading}, timeout=0.25)
            if service.stopping and not reading.done():
                raise JobFailed("shutdown", "the server is shutting down")
            if time.monotonic() > deadline and not reading.done():
                raise BadRequest("the request body did not arrive within the server's time limit", None, 408)
    finally:
        if not reading.done():
            reading.cancel()
    try:
        return json.loads(reading.result())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is JSON nested too deeply") from None
    except ValueError:  # Python's limit on an integer's digits (json.loads reads integers whole)
        raise BadRequest("a number in the request body has too many digits") from None


async def _receive(request: Request, service: Service) -> bytes:
    """The body, its bytes counted in `service.receiving` while they are held here: given
    back however the reading ends (done, refused, timed out, disconnected, cancelled)."""
    chunks: list[bytes] = []
    size = held = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > service.max_body:
                raise BadRequest(f"the request body is over {service.max_body:,} bytes, the most this server takes",
                                 None, 413)
            if service.receiving + len(chunk) > service.max_body_total:
                raise _BodiesFull(f"the server is receiving as many request bodies as it holds at once "
                                  f"({service.max_body_total:,} bytes); retry in a moment", None, 503)
            service.receiving += len(chunk)
            held += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        service.receiving -= held


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON in ASCII: a lone surrogate from a request, quoted back in a message, stays valid."""
    return Response(json.dumps(body, ensure_ascii=True), status, headers, media_type="application/json")


def _error(exc: BadRequest, headers: dict[str, str] | None = None) -> Response:
    return _json(error_body(str(exc), exc.param, exc.status, exc.code), exc.status, headers)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name other than localhost counts as not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
