"""A WebSocket client on a bare TCP stream, driven by websockets' sans-I/O ClientProtocol.

It lets a test send what a well-behaved client never would (invalid UTF-8, oversized or
compressed frames, odd fragments and control frames, unmasked frames, raw bytes) and
see exactly what the gateway answers, including the close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Sequence

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

__all__ = ["RawClient", "http_status"]


class RawClient:
    """One connection; call :meth:`open`, then ``protocol.send_*`` + :meth:`flush`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.response: Response | None = None
        self.sent_bytes = 0  # bytes written since the handshake
        self._frames: list[Frame] = []

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        path: str = "/ws",
        subprotocols: Sequence[str] = (),
        compress: bool = False,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 5.0,
        rcvbuf: int | None = None,
    ) -> RawClient:
        """Connect and complete the opening handshake (``response`` holds the answer).

        ``rcvbuf`` shrinks the socket's receive buffer (for clients that stop reading).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        protocol = ClientProtocol(
            parse_uri(f"ws://127.0.0.1:{port}{path}"),
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            extensions=[ClientPerMessageDeflateFactory()] if compress else None,
            max_size=None,
        )
        request = protocol.connect()
        for name, value in headers:
            request.headers[name] = value
        protocol.send_request(request)
        client = cls(reader, writer, protocol)
        await client.flush(count=False)
        async with asyncio.timeout(timeout):
            while client.response is None:
                await client._receive()
        return client

    async def flush(self, count: bool = True) -> None:
        """Write what the protocol has queued (frames, pongs, close replies)."""
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
                if count:
                    self.sent_bytes += len(data)
            elif self.writer.can_write_eof():
                self.writer.write_eof()
        await self.writer.drain()

    async def write_raw(self, data: bytes) -> None:
        """Write bytes as they are, bypassing the protocol (e.g. an unmasked frame)."""
        self.writer.write(data)
        await self.writer.drain()

    async def _receive(self) -> None:
        data = await self.reader.read(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.response = event
            else:
                self._frames.append(event)
        # The server may already be gone; answering its close frame is then moot.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.flush(count=False)
        if not data and self.protocol.state is not State.CLOSED:
            raise ConnectionError("EOF during handshake")

    async def frame(self, timeout: float = 5.0) -> Frame:
        """The next frame the server sent (after decompression)."""
        async with asyncio.timeout(timeout):
            while not self._frames:
                if self.protocol.state is State.CLOSED:
                    raise ConnectionError("connection closed")
                await self._receive()
        return self._frames.pop(0)

    async def message(self, timeout: float = 5.0) -> str | bytes:
        """The next complete data message; control frames in between are skipped."""
        parts: list[bytes] = []
        opcode: Opcode | None = None
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame(timeout)
                if frame.opcode in (Opcode.PING, Opcode.PONG):
                    continue
                if frame.opcode is Opcode.CLOSE:
                    raise ConnectionError(f"closed: {self.protocol.close_code}")
                if opcode is None:
                    opcode = frame.opcode
                parts.append(frame.data)
                if frame.fin:
                    data = b"".join(parts)
                    return data.decode() if opcode is Opcode.TEXT else data

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the connection is closed; the close code the server sent."""
        async with asyncio.timeout(timeout):
            while self.protocol.state is not State.CLOSED:
                await self._receive()
        self.writer.close()
        return self.protocol.close_code

    async def close(self) -> None:
        """Close the TCP connection without ceremony."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def http_status(
    port: int, request: bytes, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP request; the response status, headers (lower-cased) and body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        raw = await reader.read()
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def frame_bytes(
    opcode: int,
    data: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame serialised without any validity check (any opcode, flags, length field).

    ``rsv`` holds the three reserved bits (0-7); ``length`` overrides the encoded
    payload length (to lie about it).
    """
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0x0F)
    n = len(data) if length is None else length
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes([first, mask_bit | n])
    elif n < 2**16:
        header = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return header + data
    key = secrets.token_bytes(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))
