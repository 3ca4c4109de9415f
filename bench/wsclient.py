"""A lean WebSocket client for load driving: websockets' sans-I/O protocol on an asyncio Protocol.

No task per connection and no task switch per message: frames are handled in
``data_received`` and written straight to the transport, so the driver spends
as little of the shared CPU as possible. Plain text frames only (what the
benchmark sends); no extensions are offered, so no compression on either side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["WsClient", "open_client"]


class WsClient(asyncio.Protocol):
    """One client connection. Set ``on_text`` before sending; it gets each reply as ``str``."""

    def __init__(self, url: str) -> None:
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_text: Callable[[str], None] = _ignore
        self.transport: asyncio.Transport | None = None
        self._fragments: list[bytes] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Response):
                if not self.opened.done():
                    if proto.state is State.OPEN:
                        self.opened.set_result(None)
                    else:
                        self.opened.set_exception(
                            ConnectionError(f"handshake refused: HTTP {event.status_code}")
                        )
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                if not event.fin:
                    self._fragments.append(event.data)
                    continue
                data = event.data
                if self._fragments:
                    self._fragments.append(data)
                    data = b"".join(self._fragments)
                    self._fragments = []
                self.on_text(data.decode())
        self._flush()
        if proto.close_expected() and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    # API

    def send(self, text: str) -> None:
        """Send one text frame now."""
        self.proto.send_text(text.encode())
        self._flush()

    def close(self) -> None:
        """Start a clean close (1000); ``closed`` resolves when the TCP connection ends."""
        if self.proto.state is State.OPEN:
            self.proto.send_close(1000)
            self._flush()
        elif self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        data = self.proto.data_to_send()
        if data and self.transport is not None:
            self.transport.write(b"".join(d for d in data if d))


async def open_client(url: str, timeout: float = 30.0) -> WsClient:
    """Connect to ``url`` and finish the WebSocket handshake within ``timeout`` seconds."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, client = await loop.create_connection(lambda: WsClient(url), uri.host, uri.port)
        await client.opened
    return client


def _ignore(_text: str) -> None:
    return None
