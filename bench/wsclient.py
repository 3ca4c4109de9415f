"""A lean WebSocket client for load driving, on a plain asyncio Protocol.

websockets' sans-I/O :class:`~websockets.client.ClientProtocol` performs the
opening handshake; after it, frames are encoded and parsed here (RFC 6455
framing is a few lines for what a load driver sends and gets), because the
driver shares the machine's two cores with the systems it measures and every
microsecond it spends per message is taken from them. No task per connection,
no task switch per message: replies are handled in ``data_received``.

Supported after the handshake: text and binary messages (fragmented or not),
ping (answered with pong), close (answered, then the connection ends). Each
outgoing frame is masked, as clients must, with a per-connection random key
(the RFC asks for a fresh key per frame; servers cannot tell, and this saves a
``getrandom`` per frame). No extensions are offered, so no compression.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.protocol import State
from websockets.speedups import apply_mask  # type: ignore[import-not-found]
from websockets.uri import parse_uri

__all__ = ["WsClient", "encode_frame", "open_client"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def encode_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    return head + mask + apply_mask(payload, mask)


class WsClient(asyncio.Protocol):
    """One client connection. Set ``on_text`` before sending; it gets each reply as ``str``."""

    def __init__(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        self.handshake: ClientProtocol | None = ClientProtocol(parse_uri(url), max_size=None)
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_text: Callable[[str], None] = _ignore
        self.transport: asyncio.Transport | None = None
        self._mask = os.urandom(4)
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._closing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        assert self.handshake is not None
        self.handshake.send_request(self.handshake.connect())
        self._write_handshake()

    def data_received(self, data: bytes) -> None:
        if self.handshake is not None:
            self._receive_handshake(data)
            return
        buf = self._buffer + data if self._buffer else data
        i, end = 0, len(buf)
        while end - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            n = b1 & 0x7F
            start = i + 2
            if n == 126:
                if end - start < 2:
                    break
                (n,) = struct.unpack_from("!H", buf, start)
                start += 2
            elif n == 127:
                if end - start < 8:
                    break
                (n,) = struct.unpack_from("!Q", buf, start)
                start += 8
            if end - start < n:
                break
            payload = buf[start : start + n]
            i = start + n
            opcode = b0 & 0x0F
            if opcode <= OP_BINARY:
                if not b0 & 0x80:
                    self._fragments.append(payload)
                    continue
                if self._fragments:
                    self._fragments.append(payload)
                    payload = b"".join(self._fragments)
                    self._fragments = []
                self.on_text(payload.decode())
            elif opcode == OP_PING:
                self._write(encode_frame(OP_PONG, payload, self._mask))
            elif opcode == OP_CLOSE:
                if not self._closing:
                    self._write(encode_frame(OP_CLOSE, payload[:2], self._mask))
                if self.transport is not None:
                    self.transport.close()
                return
        self._buffer = buf[i:] if i < end else b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    # API

    def send(self, text: str) -> None:
        """Send one text frame now."""
        self.transport.write(encode_frame(OP_TEXT, text.encode(), self._mask))  # type: ignore[union-attr]

    def close(self) -> None:
        """Start a clean close (1000); ``closed`` resolves when the TCP connection ends."""
        if self.handshake is None and not self._closing:
            self._closing = True
            self._write(encode_frame(OP_CLOSE, struct.pack("!H", 1000), self._mask))
        elif self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    # Handshake (websockets' sans-I/O protocol)

    def _receive_handshake(self, data: bytes) -> None:
        proto = self.handshake
        assert proto is not None
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Response):
                if proto.state is State.OPEN:
                    self.handshake = None
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(
                        ConnectionError(f"handshake refused: HTTP {event.status_code}")
                    )
                    if self.transport is not None:
                        self.transport.close()
                break
        else:
            self._write_handshake()

    def _write_handshake(self) -> None:
        assert self.handshake is not None
        data = b"".join(self.handshake.data_to_send())
        if data:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


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
