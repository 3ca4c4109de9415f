"""A tiny WebSocket test server on its own thread, with faults on demand.

It speaks both gateway modes: ``hopline.v1`` (when the client offers it) and plain.
Each request gets ``data + " world"`` back after ``delay`` seconds, unless a fault
applies: every ``error_every``-th request gets a ``busy`` error reply, every
``wrong_every``-th a wrong reply, the ``drop_after``-th request of a connection
closes that connection without a reply (and, with ``stop_listening_on_drop``,
stops accepting connections), and one *stall* (from ``stall_after``
seconds after the first request, for ``stall_for`` seconds) holds every reply
until it ends. Its own loop and thread let sync tests (CliRunner) and the load
tester's ``asyncio.run`` use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from hopline.wire.envelope import (
    SUBPROTOCOL,
    decode_envelope,
    encode_envelope_error,
    encode_envelope_reply,
    encode_plain_error,
)
from hopline.wire.errors import ErrorCode

__all__ = ["EchoServer"]


@dataclass
class EchoServer:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    delay: float = 0.0
    error_every: int = 0
    wrong_every: int = 0
    drop_after: int = 0
    stop_listening_on_drop: bool = False
    stall_after: float | None = None
    stall_for: float = 0.0
    port: int = 0
    received: int = 0
    opened_at: list[float] = field(default_factory=list)  # loop.time() of each connection
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Future[None] | None = None
    _thread: threading.Thread | None = None
    _first: float | None = None
    _listener: Any = None
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> EchoServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "test server did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            compression=None,
            select_subprotocol=lambda conn, offered: (
                SUBPROTOCOL if SUBPROTOCOL in offered else None
            ),
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._listener = server.server
            self._ready.set()
            await self._stop

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        v1 = ws.subprotocol == SUBPROTOCOL
        self.opened_at.append(loop.time())
        on_this_socket = 0
        async for message in ws:
            self.received += 1
            on_this_socket += 1
            now = loop.time()
            if self._first is None:
                self._first = now
            if self.drop_after and on_this_socket >= self.drop_after:
                if self.stop_listening_on_drop:
                    self._listener.close()  # new connections are refused from now on
                ws.transport.abort()  # type: ignore[attr-defined]
                return
            reply = self._reply(str(message), v1, self.received)
            at = now + self.delay
            if self.stall_after is not None:
                start = self._first + self.stall_after
                if start <= now < start + self.stall_for:
                    at = max(at, start + self.stall_for)
            loop.call_at(at, self._send, ws, reply)

    @staticmethod
    def _send(ws: ServerConnection, reply: str) -> None:
        asyncio.get_running_loop().create_task(_send_quietly(ws, reply))

    def _reply(self, message: str, v1: bool, n: int) -> str:
        error = bool(self.error_every) and n % self.error_every == 0
        wrong = bool(self.wrong_every) and n % self.wrong_every == 0
        if v1:
            envelope = decode_envelope(message)
            if error:
                return encode_envelope_error(envelope.id, ErrorCode.BUSY, "x")
            data = "wrong" if wrong else envelope.data + " world"
            return encode_envelope_reply(envelope.id, data)
        if error:
            return encode_plain_error(ErrorCode.BUSY, "x")
        return "wrong" if wrong else message + " world"


async def _send_quietly(ws: ServerConnection, reply: str) -> None:
    with contextlib.suppress(Exception):  # the client went away: nothing to reply to
        await ws.send(reply)
