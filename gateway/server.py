"""The gateway process: one websockets server routing /ws, /stream, /health, /metrics, /stats.

Usage::

    gateway = Gateway(settings)
    await gateway.start()          # raises BrokerUnavailable if RabbitMQ can't be reached
    ...
    await gateway.stop()           # drain: 503 on /health, finish in-flight, close with 1001
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from gateway import http
from gateway.broker import Broker
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.protocol import SUBPROTOCOL
from gateway.session import Session

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


def _connection_class(handshake_timeout: float) -> type[ServerConnection]:
    """A connection that bounds only the wait for the HTTP request line and headers.

    websockets' ``open_timeout`` also bounds ``process_request``, which would cut a
    ``/stream`` request waiting for its reply; this bounds the slow-client part only.
    """

    class _Connection(ServerConnection):
        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            async with asyncio.timeout(handshake_timeout):
                await asyncio.wait(
                    [self.request_rcvd, self.connection_lost_waiter],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            await super().handshake(*args, **kwargs)

    return _Connection


def _select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> str | None:
    """``hopline.v1`` when offered; otherwise plain mode (whatever else the client offers)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


class Gateway:
    """Owns the broker side, the listening server and the live sessions."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.broker = Broker(settings, self.metrics)
        self.active_websockets = 0
        self.draining = False
        self._server: Server | None = None
        self.metrics.bind_gauges(
            lambda: self.active_websockets, lambda: self.broker.pending_requests
        )

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Connect to the broker, then listen."""
        await self.broker.start()
        s = self.settings
        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,  # type: ignore[arg-type]
            max_size=s.max_message_size,
            open_timeout=None,
            create_connection=_connection_class(s.handshake_timeout),
        )
        log.info("listening on ws://%s:%d/ws", s.host, self.port)

    async def stop(self) -> None:
        """Drain and stop: refuse new work, let in-flight requests finish, close sockets."""
        self.draining = True
        if self._server is not None:
            self._server.close(close_connections=False)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout):
                    await self.broker.wait_idle()
            self._server.close(close_connections=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout):
                    await self._server.wait_closed()
        await self.broker.close()
        log.info("stopped")

    async def _process_request(
        self, conn: ServerConnection, request: HttpRequest
    ) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            if self.draining:
                return http.respond(503, "draining\n", "text/plain")
            return None
        if path == "/health":
            return http.health(self)
        if path == "/metrics":
            return http.metrics(self)
        if path == "/stats":
            return http.stats(self)
        if path.startswith("/stream/"):
            return await http.stream(self, path[len("/stream/") :])
        return http.not_found(path)

    async def _handle(self, ws: ServerConnection) -> None:
        self.active_websockets += 1
        log.debug("open %s subprotocol=%s", ws.remote_address, ws.subprotocol)
        try:
            await Session(ws, self.broker, self.metrics, self.settings.window).run()
        finally:
            self.active_websockets -= 1
            log.debug("closed %s", ws.remote_address)
