"""The gateway process: one websockets server routing /ws, /stream, /health, /metrics, /stats.

Usage::

    gateway = Gateway(settings)
    await gateway.start()          # raises BrokerUnavailable if RabbitMQ can't be reached
    ...
    await gateway.stop()           # drain: 503 on /health, finish in-flight, close with 1001

Admission happens in ``process_request``, before any upgrade, in this order:
a method the route does not answer -> 405, ``OPTIONS`` (CORS preflight) -> 204,
and on ``/ws`` and ``/stream`` the origin policy -> 403 (:func:`gateway.http.screen`);
``/ws`` while draining -> 503; an EventSource reconnect (``Last-Event-ID``) on
``/stream`` -> 204; a valid token when ``token_secret`` is set -> 401 (``/ws`` and
``/stream``; ``/stream`` also takes a short-lived stream token in ``?token=``, see
:mod:`gateway.stream_token`); a free connection slot -> 503. ``/health``,
``/metrics``, ``/stats`` and ``/client.js`` are answered while the gateway holds
fewer than ``max_connections`` + :data:`~gateway.admission.MONITORING_RESERVE` TCP connections;
``process_response`` adds the CORS headers (:func:`gateway.http.decorate`).

Before that, at TCP accept, every connection counts, handshakes in progress
included: beyond ``max_connections`` + :data:`~gateway.admission.MONITORING_RESERVE` (or
``max_connections_per_address`` from one address) it gets a canned 503 (429) and
is closed without being read. A request head larger than ``max_header_bytes``
gets 431 while it is received; too many headers 431, too many subprotocol
entries 400, before any value is parsed. Connections that don't send their HTTP
request within ``handshake_timeout`` are dropped. A sweeper task drops sockets
whose client stops reading (writes paused by flow control) for ``write_timeout``
and closes sockets idle for ``idle_timeout``. Limits are listed in docs/hardening.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from gateway import _websockets_compat as compat
from gateway import http, sse
from gateway.admission import (
    AcceptCounter,
    GatewayConnection,
    StreamLimiter,
    connection_class,
    drop,
)
from gateway.broker import Broker
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.security import (
    InvalidToken,
    TokenVerifier,
    check_head,
    find_token,
    header_values,
    install_redaction,
)
from gateway.session import RATE_LIMITED, Session
from gateway.stream_token import check_purpose, install_url_redaction, url_token
from hopline.wire.envelope import SUBPROTOCOL, encode_plain_error
from hopline.wire.errors import ErrorCode

__all__ = ["PLAIN_SUBPROTOCOL", "Gateway", "WorkerIdentity"]

log = logging.getLogger(__name__)

# Browsers fail a handshake whose offered subprotocols all go unanswered; one that
# sends its token as a subprotocol entry and wants plain mode offers this one too.
PLAIN_SUBPROTOCOL = "hopline.plain"

# The close reason of the 1001 sent to every socket when the gateway stops.
SHUTDOWN_REASON = "gateway shutting down"


IDLE_CLOSE_CODE = 1000
IDLE_REASON = "idle timeout"


def _select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> str | None:
    """``hopline.v1`` when offered, else ``hopline.plain`` when offered, else none (plain mode).

    Never a ``hopline.token.*`` entry: the token is not echoed back.
    """
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return PLAIN_SUBPROTOCOL if PLAIN_SUBPROTOCOL in offered else None


def _offered_subprotocols(request: HttpRequest) -> list[str]:
    try:
        return [
            entry
            for value in header_values(request.headers, "Sec-WebSocket-Protocol")
            for entry in parse_subprotocol(value)
        ]
    except InvalidHeader:
        return []  # the upgrade itself will fail with 400


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Which of ``count`` gateway processes on one port this is (``hopline gateway --workers``).

    ``sock``: a listening socket shared by every worker, where the platform has no
    ``SO_REUSEPORT``; None means each worker binds its own with ``reuse_port``.
    """

    index: int = 0
    count: int = 1
    sock: socket.socket | None = None


class Gateway:
    """Owns the broker side, the listening server and the live sessions."""

    def __init__(self, settings: GatewaySettings, worker: WorkerIdentity | None = None) -> None:
        self.settings = settings
        self.worker = worker or WorkerIdentity()
        self.metrics = GatewayMetrics()
        self.broker = Broker(settings, self.metrics)
        self.active_websockets = 0
        self.connections = 0  # admitted /ws sockets and /stream requests (connection slots)
        self.draining = False
        self._server: Server | None = None
        self._admitted: set[ServerConnection] = set()  # /ws sockets and /stream requests
        self._sweeper: asyncio.Task[None] | None = None
        self.accepts = AcceptCounter(settings.max_connections, settings.max_connections_per_address)
        self.sessions: set[Session] = set()
        self._closing: set[asyncio.Task[None]] = set()  # idle sockets being closed
        self._stream_limiter = StreamLimiter(settings.rate_limit, settings.rate_burst)
        self._verifier = (
            TokenVerifier(settings.token_secret) if settings.token_secret is not None else None
        )
        self.metrics.bind_gauges(
            lambda: self.active_websockets, lambda: self.broker.pending_requests
        )

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def write_stalls(self) -> list[float]:
        """For each admitted connection whose writes are paused (client not reading): how long."""
        now = asyncio.get_running_loop().time()
        return [
            now - since
            for conn in self._admitted
            if (since := getattr(conn, "paused_since", None)) is not None
        ]

    @property
    def tcp_connections(self) -> int:
        """Accepted TCP connections, handshakes in progress included."""
        return self.accepts.total

    def release_slot(self, conn: ServerConnection) -> None:
        """Give back the connection slot ``conn`` took in :meth:`_admit`."""
        self.connections -= 1
        self._admitted.discard(conn)

    async def start(self) -> None:
        """Connect to the broker, then listen."""
        await self.broker.start()
        s = self.settings
        ws_logger = logging.getLogger("websockets.server")
        install_redaction(ws_logger)  # it logs request headers at debug level
        install_url_redaction(ws_logger)  # and request lines, with /stream?token=
        shared = self.worker.sock
        where: dict[str, Any] = (
            {"sock": shared} if shared is not None else {"host": s.host, "port": s.port}
        )
        if shared is None and self.worker.count > 1:
            where["reuse_port"] = True  # the kernel spreads connections over the workers
        self._server = await serve(
            self._handle,
            **where,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=_select_subprotocol,  # type: ignore[arg-type]
            max_size=s.max_message_size,
            open_timeout=None,
            create_connection=connection_class(self),
            logger=ws_logger,
            compression=None if s.compression == "none" else "deflate",
            # The default backlog (100) overflowed while 10,000 clients connected, and
            # SYN retransmits then delayed handshakes by seconds (bench/ scale scenario).
            **({} if shared is not None else {"backlog": 1024}),
        )
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_stalled())
        log.info("listening on ws://%s:%d/ws", s.host, self.port)

    async def stop(self) -> None:
        """Drain and stop: refuse new work, let in-flight requests finish, close sockets."""
        self.draining = True
        self.broker.stop_accepting()  # new requests on open sockets get 'unavailable'
        if self._server is not None:
            # Still listening while draining: /health answers 503, /ws upgrades get 503.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout):
                    await self.broker.wait_idle()
            self._server.close(close_connections=False)
            # Requests still unanswered after the drain timeout get an explicit error,
            # and their sessions a moment to write it, before the sockets close.
            if self.broker.pending_requests:
                self.broker.fail_pending("gateway shut down before the reply came")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.drain_timeout):
                        await asyncio.gather(*(s.settle() for s in list(self.sessions)))
            # Server.close() is idempotent: the call above already chose not to close
            # connections, so close the open sockets (1001) here.
            closing = [
                asyncio.ensure_future(ws.close(1001, SHUTDOWN_REASON))
                for ws in self._server.connections
            ]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout):
                    if closing:
                        await asyncio.wait(closing)
                    await self._server.wait_closed()
        if self._sweeper is not None:  # it kept cutting non-reading clients during the drain
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.broker.close()
        log.info("stopped")

    async def _process_request(
        self, conn: ServerConnection, request: HttpRequest
    ) -> Response | None:
        s = self.settings
        refusal = check_head(request.headers.raw_items(), s.max_headers, s.max_subprotocols)
        if refusal is not None:
            log.debug("refused %s: %s", conn.remote_address, refusal)
            status = 400 if "subprotocol" in refusal else 431
            return http.respond(status, f"{refusal}\n", "text/plain")
        path = urlsplit(request.path).path
        screened = http.screen(self, request, path)  # methods, preflight, origin policy
        if screened is not None:
            return screened
        if path == "/ws":
            if self.draining:
                return http.respond(503, "draining\n", "text/plain")
            return self._admit(conn, request, "/ws")
        if path == "/health":
            return http.health(self)
        if path == "/metrics":
            return http.metrics(self)
        if path == "/stats":
            return http.stats(self)
        if path.startswith("/stream/"):
            if sse.is_reconnect(request):
                return sse.reconnect_response()
            if request.method == "HEAD":  # admission's verdict, nothing run or rate-counted
                return self._admit(conn, request, "/stream") or sse.head_response()
            refusal = self._admit(conn, request, "/stream") or self._stream_rate(conn)
            if refusal is not None:
                return refusal
            return await sse.stream(self, conn, request, path[len("/stream/") :])
        if path == "/client.js":
            return http.client_js(request)
        return http.not_found(path)

    def _process_response(
        self, conn: ServerConnection, request: HttpRequest, response: Response
    ) -> Response | None:
        return http.decorate(self, request, response)

    def _admit(self, conn: ServerConnection, request: HttpRequest, route: str) -> Response | None:
        """None, with a connection slot taken, if the request may proceed; else the refusal.

        ``route`` is ``/ws`` or ``/stream`` (only ``/stream`` reads a ``?token=``).
        """
        if self._verifier is not None:
            try:
                authorization = header_values(request.headers, "Authorization")
                if len(authorization) > 1:
                    raise InvalidToken("several Authorization headers")
                token = find_token(
                    authorization[0] if authorization else None, _offered_subprotocols(request)
                )
                in_url = token is None and route == "/stream"
                if in_url:
                    token = url_token(request.path)
                claims = self._verifier.verify(token)
                check_purpose(claims, route=route, in_url=in_url, now=time.time())
            except InvalidToken as exc:
                log.debug("refused %s: %s", conn.remote_address, exc)
                return http.respond(
                    401,
                    f"{exc}\n",
                    "text/plain",
                    WWW_Authenticate='Bearer realm="hopline", error="invalid_token"',
                )
        limit = self.settings.max_connections
        if limit and self.connections >= limit:
            log.debug("refused %s: %d connections open", conn.remote_address, self.connections)
            return http.respond(503, "too many connections\n", "text/plain", Retry_After="1")
        self.connections += 1
        self._admitted.add(conn)
        conn.holds_slot = True  # type: ignore[attr-defined]
        return None

    def _stream_rate(self, conn: ServerConnection) -> Response | None:
        """/stream is rate-limited per address like a socket: None, or the 429 refusal."""
        address = getattr(conn, "address", None) or ""
        if self._stream_limiter.allow(address, asyncio.get_running_loop().time()):
            return None
        self.metrics.requests.inc()
        self.metrics.errors(ErrorCode.BUSY).inc()
        return http.respond(
            429,
            encode_plain_error(ErrorCode.BUSY, RATE_LIMITED) + "\n",
            http.JSON_TYPE,
            Retry_After="1",
        )

    async def _sweep_stalled(self) -> None:
        """Each tick: drop sockets whose writes have been paused for ``write_timeout`` (client
        not reading), close sockets idle for ``idle_timeout``, forget full /stream buckets."""
        s = self.settings
        timeout, idle = s.write_timeout, s.idle_timeout
        tick = min(1.0, timeout / 4, idle / 4 if idle > 0 else 1.0)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for conn in list(self._admitted):
                since = getattr(conn, "paused_since", None)
                if since is not None and now - since >= timeout:
                    drop(conn, f"client did not read for {timeout:g} s")
            if idle > 0:
                clock = perf_counter()
                for session in list(self.sessions):
                    if session.idle and clock - session.last_active >= idle:
                        log.info("closing idle connection from %s", session.ws.remote_address)
                        task = loop.create_task(session.ws.close(IDLE_CLOSE_CODE, IDLE_REASON))
                        self._closing.add(task)
                        task.add_done_callback(self._closing.discard)
                        session.last_active = clock + idle  # not again while it closes
            self._stream_limiter.prune(now)

    async def _handle(self, ws: ServerConnection) -> None:
        self.active_websockets += 1
        log.debug("open %s subprotocol=%s", ws.remote_address, ws.subprotocol)
        compat.forget_request(ws)
        session = Session(ws, self.broker, self.metrics, self.settings)
        assert isinstance(ws, GatewayConnection)
        ws.session = session
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            ws.session = None
            self.active_websockets -= 1
            log.debug("closed %s", ws.remote_address)
