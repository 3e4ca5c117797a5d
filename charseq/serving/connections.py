"""The listening socket and its connections for `charseq serve`: how many may be open,
how long a client may take to send a request's headers, and uvicorn's server run over the
app (charseq.serving.app), guarded so that no client can hold the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
from http import HTTPStatus
from typing import Any

# h11 as uvicorn uses it: taken through uvicorn, which the type checker knows as an optional package.
from uvicorn.protocols.http.h11_impl import H11Protocol, h11

from charseq.serving.api import error_body
from charseq.serving.app import ARRIVED, Service, create_app

MAX_CONNECTIONS = 1000
SPARE_FILES = 64  # open files kept for all but connections: the model, the logs, the listening socket
LISTEN_BACKLOG = 2048
# Bytes read from a socket at a time (asyncio's default is 256 KiB): each connection with
# bytes waiting holds one read of them before the app can count it against the bodies'
# cap, so this is what a burst of connections costs each.
READ_SIZE = 16 << 10


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); OSError if it cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def open_file_limit() -> int | None:
    """The process's soft limit on open files (every connection is one), first raised to the
    hard limit where the system allows; None where there is no such limit."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # above the system's own ceiling: keep what there is
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def connection_room(file_limit: int | None) -> int:
    """The most connections an open-file limit holds, with SPARE_FILES kept for the rest."""
    return sys.maxsize if file_limit is None else file_limit - SPARE_FILES


class ConnectionGuard:
    """What the connections of one server share: the time their request headers may take,
    and the open connections, oldest first, up to `most`."""

    def __init__(self, header_timeout: float, most: int):
        self.header_timeout, self.most = header_timeout, most
        self.open: dict[GuardedProtocol, None] = {}  # a dict keeps the order they came in

    def admit(self, connection: GuardedProtocol) -> bool:
        """Room for a new connection: at the cap the oldest idle one is closed for it; False
        (the new one is refused) when every open connection has a request in progress."""
        if len(self.open) >= self.most:
            oldest_idle = next((open_ for open_ in self.open if open_.idle), None)
            if oldest_idle is None:
                return False
            self.leave(oldest_idle)
            oldest_idle.transport.close()
        self.open[connection] = None
        return True

    def leave(self, connection: GuardedProtocol) -> None:
        self.open.pop(connection, None)


class GuardedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a public server's guards: a connection has
    `guard.header_timeout` seconds to send its first byte, and each request as long from its
    first byte to its last header (a 408, then the connection is closed), or, answered before
    its body was read, for the rest of the body; and at most `guard.most` connections are
    open (see ConnectionGuard.admit; a refused one gets a 503). A request's first byte time
    reaches the app as scope["state"][ARRIVED], where its time limit starts."""

    guard: ConnectionGuard  # set by a subclass for each server
    _deadline: asyncio.TimerHandle | None = None
    _first_byte: float | None = None  # of the request whose headers are arriving

    @property
    def idle(self) -> bool:
        """No request in progress: none yet, between requests, its headers still arriving, or
        answered (the rest of a body the app did not read may still be arriving)."""
        return self.transport.is_closing() or self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: Any) -> None:  # (an asyncio.Transport; Any: uvicorn's own override narrows it)
        super().connection_made(transport)
        if hasattr(transport, "max_size"):  # asyncio's own transports read up to this much at a time
            setattr(transport, "max_size", READ_SIZE)
        if not self.guard.admit(self):
            self._answer_and_close(503, "the server has as many connections open as it takes, each with a request "
                                        "in progress; retry in a moment", {"Retry-After": "1"})
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.leave(self)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._first_byte is None and self.conn.their_state is h11.IDLE:  # a new request's first byte
            self._first_byte = time.monotonic()
            self._arm()
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are in; its task is made but has not run
            self.scope.setdefault("state", {})[ARRIVED] = (time.monotonic() if self._first_byte is None
                                                           else self._first_byte)
            self._first_byte = None
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # which may start a request that came meanwhile
        answered = self.cycle.response_complete and not self.transport.is_closing()
        if answered and self.conn.their_state is h11.SEND_BODY:
            self._arm()  # answered before its body was read: the rest has the time limit to come

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.guard.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._answer_and_close(408, "the request did not arrive within the server's time limit")
        else:  # answered already: the body it did not read is still arriving
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot read (no Host, a bad header, not HTTP at all): a 400 in
        OpenAI's shape, as every other error here."""
        self._answer_and_close(400, f"the request is not HTTP/1.1 this server can read ({msg.rstrip('.').lower()})")

    def _answer_and_close(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """An error in OpenAI's shape, written as bytes: h11 answers only a request it has read whole."""
        body = json.dumps(error_body(message, None, status), ensure_ascii=True).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Connection: close",
                *(f"{name}: {value}" for name, value in (headers or {}).items())]
        self.transport.write("\r\n".join(head).encode("ascii") + b"\r\n\r\n" + body)
        self.transport.close()


def _accept_batch(max_connections: int) -> int:
    """How many connections are taken from the listening socket at once, each an open file
    before any is closed: what the connection cap leaves of the limit, less half the files
    kept spare for the rest; and at most half the cap, so that a connection taken in one
    batch is not closed as idle by the next before its request is read (the oldest idle
    go first)."""
    file_limit = open_file_limit()  # raised already: this reads it
    room = LISTEN_BACKLOG if file_limit is None else file_limit - max_connections - SPARE_FILES // 2
    return max(1, min(LISTEN_BACKLOG, room, max_connections // 2))


def run(service: Service, sock: socket.socket, access_log: bool = False,
        max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve until Ctrl-C or SIGTERM. The first signal ends every request in flight (each
    stream gets an error event saying the server is shutting down) and closes the server
    within seconds; a second Ctrl-C ends it at once."""
    import uvicorn

    engine = service.engine

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.stopping = True
            engine.stop()
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again once it has stopped; SIGTERM would then kill the
            # process (exit 143) rather than let it say it stopped and exit 0.
            self._captured_signals.clear()

    class _Protocol(GuardedProtocol):
        guard = ConnectionGuard(service.limits.timeout, max_connections)

    # http: this protocol whether or not httptools is installed; ws: no upgrade leaves the guard.
    config = uvicorn.Config(create_app(service), http=_Protocol, ws="none", log_level="warning",
                            access_log=access_log, lifespan="off", timeout_graceful_shutdown=5,
                            backlog=_accept_batch(max_connections))
    if access_log:  # the warning level keeps uvicorn's own messages quiet, and would its access log
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    engine.start()
    try:
        _Server(config).run(sockets=[sock])
    finally:
        engine.stop()
        engine.join(5)
