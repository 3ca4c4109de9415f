"""The gateway process: one websockets server routing /ws, /stream, /health, /metrics, /stats.

Usage::

    gateway = Gateway(settings)
    await gateway.start()          # raises BrokerUnavailable if RabbitMQ can't be reached
    ...
    await gateway.stop()           # drain: 503 on /health, finish in-flight, close with 1001

Admission happens in ``process_request``, before any upgrade, in this order:
``/ws`` while draining -> 503; a listed ``Origin`` is required when an allow-list
is set -> 403; a valid token when ``token_secret`` is set -> 401 (``/ws`` and
``/stream``); a free connection slot -> 503. ``/health``, ``/metrics`` and
``/stats`` are always answered. Connections that don't send their HTTP request
within ``handshake_timeout`` are dropped; sockets whose client stops reading (writes
paused by flow control) for ``write_timeout`` are dropped by a sweeper task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from gateway import http
from gateway.broker import Broker
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.security import (
    InvalidToken,
    TokenVerifier,
    find_token,
    header_values,
    install_redaction,
    origin_allowed,
)
from gateway.session import Session
from hopline.wire.envelope import SUBPROTOCOL

__all__ = ["PLAIN_SUBPROTOCOL", "Gateway", "WorkerIdentity"]

log = logging.getLogger(__name__)

# Browsers fail a handshake whose offered subprotocols all go unanswered; one that
# sends its token as a subprotocol entry and wants plain mode offers this one too.
PLAIN_SUBPROTOCOL = "hopline.plain"


# Bytes of automatic replies (pongs, close frames) that may pile up in the write
# buffer of a client that stopped reading; past that (a ping flood) it is cut at once.
CONTROL_BACKLOG_LIMIT = 256 * 1024


class _Connection(ServerConnection):
    """The gateway's connection: admission, handshake and write-stall bookkeeping.

    * Bounds only the wait for the HTTP request line and headers: websockets'
      ``open_timeout`` also bounds ``process_request``, which would cut a
      ``/stream`` request waiting for its reply.
    * Returns its connection slot (see ``Gateway._admit``) when it ends.
    * Records since when its writes are paused (write buffer above the high-water
      mark: the client is not reading), for the gateway's sweeper; flow-control
      callbacks fire only on transitions, so this costs nothing per message.
    * Aborts a client that keeps sending pings while not reading the pongs.
    """

    handshake_timeout = 10.0
    gateway: Gateway | None = None
    holds_slot = False
    paused_since: float | None = None
    _backlog_base = 0

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        async with asyncio.timeout(self.handshake_timeout):
            await asyncio.wait(
                [self.request_rcvd, self.connection_lost_waiter],
                return_when=asyncio.FIRST_COMPLETED,
            )
        await super().handshake(*args, **kwargs)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.paused_since = None
        if self.holds_slot and self.gateway is not None:
            self.holds_slot = False
            self.gateway.connections -= 1
            self.gateway._admitted.discard(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused_since = self.loop.time()
        self._backlog_base = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused_since = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (
            self.paused_since is not None
            and self.transport.get_write_buffer_size() - self._backlog_base > CONTROL_BACKLOG_LIMIT
        ):
            drop(self, "it sends control frames but does not read the replies")


def drop(ws: ServerConnection, reason: str) -> None:
    """Cut ``ws`` now, without a close handshake (its client is not reading)."""
    if not ws.transport.is_closing():
        log.info("dropping connection from %s: %s", ws.remote_address, reason)
        ws.transport.abort()


def _connection_class(gateway: Gateway) -> type[ServerConnection]:
    class _GatewayConnection(_Connection):
        pass

    _GatewayConnection.handshake_timeout = gateway.settings.handshake_timeout
    _GatewayConnection.gateway = gateway
    return _GatewayConnection


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

    async def start(self) -> None:
        """Connect to the broker, then listen."""
        await self.broker.start()
        s = self.settings
        ws_logger = logging.getLogger("websockets.server")
        install_redaction(ws_logger)  # it logs request headers at debug level
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
            select_subprotocol=_select_subprotocol,  # type: ignore[arg-type]
            max_size=s.max_message_size,
            open_timeout=None,
            create_connection=_connection_class(self),
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
                await asyncio.sleep(0.05)
            # Server.close() is idempotent: the call above already chose not to close
            # connections, so close the open sockets (1001) here.
            closing = [asyncio.ensure_future(ws.close(1001)) for ws in self._server.connections]
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
        path = urlsplit(request.path).path
        if path == "/ws":
            if self.draining:
                return http.respond(503, "draining\n", "text/plain")
            return self._admit(conn, request)
        if path == "/health":
            return http.health(self)
        if path == "/metrics":
            return http.metrics(self)
        if path == "/stats":
            return http.stats(self)
        if path.startswith("/stream/"):
            refusal = self._admit(conn, request)
            if refusal is not None:
                return refusal
            return await http.stream(self, path[len("/stream/") :])
        return http.not_found(path)

    def _admit(self, conn: ServerConnection, request: HttpRequest) -> Response | None:
        """None, with a connection slot taken, if the request may proceed; else the refusal."""
        origins = header_values(request.headers, "Origin")
        if len(origins) > 1 or not origin_allowed(
            origins[0] if origins else None, self.settings.allowed_origins
        ):
            log.debug("refused %s: origin not allowed", conn.remote_address)
            return http.respond(403, "origin not allowed\n", "text/plain")
        if self._verifier is not None:
            try:
                authorization = header_values(request.headers, "Authorization")
                if len(authorization) > 1:
                    raise InvalidToken("several Authorization headers")
                token = find_token(
                    authorization[0] if authorization else None, _offered_subprotocols(request)
                )
                self._verifier.verify(token)
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

    async def _sweep_stalled(self) -> None:
        """Drop sockets whose writes have been paused for ``write_timeout`` (client not reading)."""
        timeout = self.settings.write_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = loop.time()
            for conn in list(self._admitted):
                since = getattr(conn, "paused_since", None)
                if since is not None and now - since >= timeout:
                    drop(conn, f"client did not read for {timeout:g} s")

    async def _handle(self, ws: ServerConnection) -> None:
        self.active_websockets += 1
        log.debug("open %s subprotocol=%s", ws.remote_address, ws.subprotocol)
        s = self.settings
        session = Session(ws, self.broker, self.metrics, s.window, s.rate_limit, s.rate_burst)
        try:
            await session.run()
        finally:
            self.active_websockets -= 1
            log.debug("closed %s", ws.remote_address)
