"""`charseq serve`: an OpenAI-compatible HTTP server and a web page (the serve extra).

Registered through ``register_commands``, the door a third party's command uses; the
server itself is charseq.serving.app (HTTP), charseq.serving.connections (the socket and its
connections), charseq.serving.api (the API) and
charseq.serving.engine (requests decoded together).
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import charseq
from charseq import hookimpl
from charseq.errors import CharseqError, UsageError
from charseq.installation import install_command

API_KEY_VARIABLE = "CHARSEQ_API_KEY"
API_KEY = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750's b64token: what a bearer header carries


# Long as a declaration is: one decorator per option, beside the command they configure; the
# work is in charseq.serving.
@hookimpl
def register_commands(cli):
    import click  # here, not at import: loading the plugins must not load the CLI's packages

    from charseq import blas
    from charseq.cli import say, threads_option

    @cli.command(short_help="Serve a model over HTTP: OpenAI's completions API and a page.")
    @click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to listen on. Anything but loopback needs an API key.")
    @click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
                  help="Port to listen on (0: any free port, printed).")
    @click.option("--api-key", envvar=API_KEY_VARIABLE, show_envvar=True,
                  help="Clients must send it as 'Authorization: Bearer KEY' (the variable keeps it out of ps).")
    @click.option("--name", "model_id", metavar="ID", help="The model's id in the API.  [default: the file's stem]")
    @click.option("--max-tokens", type=click.IntRange(min=1), default=4096, show_default=True,
                  help="Most characters a choice may ask for.")
    @click.option("--max-n", type=click.IntRange(min=1), default=16, show_default=True,
                  help="Most choices (prompts times n) per request.")
    @click.option("--max-prompt", type=click.IntRange(min=1), default=16384, show_default=True,
                  help="Most characters in a prompt.")
    @click.option("--max-body", type=click.IntRange(min=1024), default=1 << 20, show_default=True,
                  help="Most bytes in a request body.")
    @click.option("--max-body-total", metavar="BYTES", type=click.IntRange(min=1024), default=32 << 20,
                  show_default=True,
                  help="Most bytes of request bodies held at once, all requests together (at least --max-body); "
                       "a request past it gets a 503 with Retry-After.")
    @click.option("--max-connections", metavar="N", type=click.IntRange(min=1),
                  show_default="1000, fewer where the open-file limit is lower",
                  help="Most connections open at once; at the cap an idle one (no request in progress) is closed "
                       "for a new one, else the new one gets a 503.")
    @click.option("--timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
                  help="Seconds a request may take from its first byte: its headers, body and waiting included; "
                       "also how long a new connection may stay silent.")
    @click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True,
                  help="Sequences decoded together; more wait their turn (a request with more runs alone).")
    @click.option("--access-log", is_flag=True, help="Print a line per request (to standard output).")
    @threads_option
    def serve(checkpoint_path, host, port, api_key, model_id, max_tokens, max_n, max_prompt, max_body, max_body_total,
              max_connections, timeout, max_batch, access_log, threads):
        """Serve a model over HTTP: OpenAI's completions API, and a web page at /.

        \b
        GET  /                   a page to try the model: prime, sampler, streamed text
        GET  /v1/models          the model, its vocabulary and samplers with their options
        POST /v1/completions     prompt, max_tokens (characters), temperature (0: greedy),
                                 top_p (0: greedy), n, stop, seed, echo, logprobs (0-5),
                                 stream (server-sent events); any model name is answered;
                                 charseq's samplers: "charseq": {"sampler": "top-k:k=20"}
        GET  /healthz            liveness and load

        \b
        Examples:
          charseq serve names.npz
          CHARSEQ_API_KEY=secret charseq serve novel.npz --host 0.0.0.0 --port 8080
        """
        try:
            from charseq.serving import app as server, connections
            from charseq.serving.api import Limits, served_model
            from charseq.serving.engine import Engine
        except ImportError as exc:
            raise CharseqError(f"charseq serve needs the serve extra: {install_command('serve')} ({exc})") from None
        from charseq.hooks.registry import get_registry

        if api_key is not None and not api_key.strip():
            raise UsageError(f"the API key is empty; give one with --api-key or {API_KEY_VARIABLE}, or leave both "
                             "unset on loopback")
        if api_key is not None and not API_KEY.fullmatch(api_key):
            raise UsageError("the API key must be letters, digits and - . _ ~ + / = only (a bearer token: no spaces, "
                             "nothing a client could not send in a header)")
        if not math.isfinite(timeout):
            raise UsageError(f"--timeout must be a number of seconds, got {timeout}")
        if max_body_total < max_body:
            raise UsageError(f"--max-body-total ({max_body_total:,}) must be at least --max-body ({max_body:,})")
        max_connections = _connection_cap(max_connections)
        if not server.is_loopback(host) and api_key is None:
            raise UsageError(f"--host {host} lets other machines reach the model: set an API key with --api-key or "
                             f"{API_KEY_VARIABLE} (or keep the default --host 127.0.0.1)")
        saved = charseq.load(checkpoint_path)
        limits = Limits(max_tokens=max_tokens, max_choices=max_n, max_prompt=max_prompt, timeout=timeout)
        model_id = Path(checkpoint_path).stem if model_id is None else model_id
        if not model_id or not model_id.isprintable() or model_id != model_id.strip():
            raise UsageError(f"the model's id {model_id!r} must be printable text without spaces at its ends; "
                             "give one with --name")
        engine = Engine(saved.model, saved.vocab, max_batch=max_batch)
        served = served_model(saved, model_id, get_registry(), limits, engine.shared,
                              int(Path(checkpoint_path).stat().st_mtime))
        try:
            sock = connections.listen(host, port)
        except OSError as exc:
            raise CharseqError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = sock.getsockname()
        shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        say(f"charseq: serving {served.id} ({saved.model.name}, {len(saved.vocab)} symbols) at "
            f"http://{shown_host}:{bound[1]}/ (API: /v1; Ctrl-C stops)")
        sys.stdout.flush()
        service = server.Service(served, engine, limits, api_key, max_body, max_body_total,
                                 loopback_only=api_key is None)
        try:
            with blas.limited(threads):
                connections.run(service, sock, access_log, max_connections)
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
        say("charseq: server stopped", err=True)


def _connection_cap(asked: int | None) -> int:
    """--max-connections, or its default, within what the open-file limit holds (raised first
    where allowed): every connection is an open file."""
    from charseq.serving import connections

    file_limit = connections.open_file_limit()
    room = connections.connection_room(file_limit)
    if room < 1:
        raise CharseqError(f"this process may open only {file_limit} files, too few to serve (ulimit -n raises "
                           "the limit)")
    if asked is None:
        return min(connections.MAX_CONNECTIONS, room)
    if asked > room:
        raise UsageError(f"--max-connections {asked} is more than the open-file limit holds: this process may "
                         f"open {file_limit:,} files, {connections.SPARE_FILES} of them kept for the rest, so at most "
                         f"{room:,} connections (ulimit -n raises the limit)")
    return asked
