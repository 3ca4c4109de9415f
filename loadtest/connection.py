"""One load-test socket: an asyncio protocol around the websockets sans-I/O client.

No task and no future per request: replies are handled in ``data_received`` and
the next request of a closed loop is written from that same callback; writes made
while handling one read are flushed to the transport once.

The connection owns its outstanding requests: for ``hopline.v1`` a dict from id to
start time (replies in any order), for plain mode a deque in send order (each
reply belongs to the oldest request still waiting for one). It reports every
outcome to its :class:`Sink` (the worker).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.speedups import apply_mask
from websockets.typing import Subprotocol

from hopline.wire.envelope import SUBPROTOCOL
from loadtest.stats import Outcome

if TYPE_CHECKING:
    from websockets.uri import WebSocketURI

    from loadtest.messages import Codec

__all__ = ["Connection", "HandshakeFailed", "Sink", "failure_reason", "text_frame"]

_scan_once = json.JSONDecoder().scan_once  # the C scanner, without json.loads' wrapper


def _loads(data: bytes) -> Any:
    """``json.loads`` for one compact JSON document in UTF-8 (a reply frame), cheaper.

    Raises:
        ValueError: not UTF-8 or not JSON.
    """
    text = data.decode()
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    return obj if end == len(text) else json.loads(text)


_now = time.monotonic_ns
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_OPEN = State.OPEN
CLOSE_GRACE = 2.0  # seconds to wait for the server to close TCP after a close frame
_urandom = os.urandom


def text_frame(payload: bytes) -> bytes:
    """One masked, unfragmented client text frame (RFC 6455 5.2), without extensions.

    The same bytes ``ClientProtocol.send_text`` produces when no extension is
    negotiated (the load tester offers none), at half the cost.
    """
    n = len(payload)
    mask = _urandom(4)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0xFF, n)
    return head + mask + apply_mask(payload, mask)


class HandshakeFailed(Exception):
    """The WebSocket opening handshake failed; the message is the reason to report."""


class Sink(Protocol):
    """What a connection reports to (implemented by the worker)."""

    def on_reply(
        self,
        conn: Connection,
        seq: int,
        start_ns: int,
        now_ns: int,
        outcome: Outcome,
        code: str | None,
    ) -> None:
        """Request ``seq`` got a reply at ``now_ns`` (``code`` for error replies)."""

    def on_unresolved(self, conn: Connection, seq: int, start_ns: int, outcome: Outcome) -> None:
        """Request ``seq`` timed out or was lost with its connection."""

    def on_unmatched(self) -> None:
        """A reply matched no outstanding request."""

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        """An established connection closed."""


class Connection(asyncio.Protocol):
    """One WebSocket connection of a worker (see the module docstring)."""

    def __init__(
        self, sink: Sink, index: int, uri: WebSocketURI, codec: Codec, token: str | None = None
    ) -> None:
        self.sink = sink
        self._token = token
        self.index = index
        self.codec = codec
        self.plain = codec.protocol == "plain"
        subprotocols = None if self.plain else [Subprotocol(SUBPROTOCOL)]
        self.ws = ClientProtocol(uri, subprotocols=subprotocols, max_size=None)
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handshake.add_done_callback(_retrieve)  # a failed attempt nobody awaits any more
        self.established = False
        self.closing = False  # we started closing: the loss is not a disconnect
        self.lost = False
        self.seq = 0
        self.pending: dict[int, int] = {}  # hopline.v1: id -> start ns
        self.order: deque[list[Any]] = deque()  # plain: [seq, start ns, resolved]
        self.waiting = 0  # requests sent and not resolved
        self.dirty = False
        self._out: list[bytes] = []  # request frames not yet written
        self._fragments: list[bytes] | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.ws.connect()
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self.ws.send_request(request)
        self.flush()

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if event.__class__ is Frame:
                opcode = event.opcode
                if opcode is _TEXT or opcode is _BINARY:
                    if event.fin:
                        self._message(event.data)
                    else:
                        self._fragments = [event.data]
                elif opcode is _CONT and self._fragments is not None:
                    self._fragments.append(event.data)
                    if event.fin:
                        data, self._fragments = b"".join(self._fragments), None
                        self._message(data)
                elif opcode is _CLOSE:
                    self._expect_close()
            else:
                self._handshake_done()
        self.flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeFailed(failure_reason(exc) if exc else "closed"))
        if self.established:
            self._resolve_all(Outcome.DISCONNECT)
            self.sink.on_lost(self, exc)

    # sending

    def send(self, start_ns: int) -> None:
        """Write the next request (timed from ``start_ns``); call :meth:`flush` afterwards."""
        seq = self.seq = self.seq + 1
        if self.ws.state is _OPEN:  # else the request is lost with the connection
            self._out.append(text_frame(self.codec.frame(seq)))
        if self.plain:
            self.order.append([seq, start_ns, False])
        else:
            self.pending[seq] = start_ns
        self.waiting += 1

    def flush(self) -> None:
        """Write the pending request frames, then what the protocol wants to send, at once.

        Request frames go first: a close frame the protocol queued must stay last.
        """
        self.dirty = False
        writes = self.ws.data_to_send()
        out = self._out
        if out:
            writes = out + writes if writes else out
            self._out = []
        if not writes or self.transport is None:
            return
        eof = not writes[-1]
        if eof:
            writes.pop()
        if writes:
            self.transport.write(writes[0] if len(writes) == 1 else b"".join(writes))
        if eof and self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self) -> None:
        """Start the closing handshake (the loss that follows is not a disconnect)."""
        self.closing = True
        if self.transport is None or self.lost:
            return
        if self.ws.state is _OPEN:
            self.ws.send_close(1000)
            self.flush()
            self._expect_close()
        else:
            self.transport.abort()

    def abort(self) -> None:
        """Drop the TCP connection now."""
        self.closing = True
        if self.transport is not None and not self.lost:
            self.transport.abort()

    # timeouts

    def expire(self, cutoff_ns: int) -> None:
        """Resolve as timed out every request started before ``cutoff_ns``."""
        if self.plain:
            for entry in self.order:
                if entry[2]:
                    continue
                if entry[1] > cutoff_ns:
                    break
                entry[2] = True
                self.waiting -= 1
                self.sink.on_unresolved(self, entry[0], entry[1], Outcome.TIMEOUT)
            return
        pending = self.pending
        while pending:
            seq = next(iter(pending))
            start = pending[seq]
            if start > cutoff_ns:
                break
            del pending[seq]
            self.waiting -= 1
            self.sink.on_unresolved(self, seq, start, Outcome.TIMEOUT)

    # internals

    def _handshake_done(self) -> None:
        ws = self.ws
        if self.handshake.done():
            return
        exc = ws.handshake_exc
        if exc is not None:
            self.handshake.set_exception(HandshakeFailed(_handshake_reason(exc)))
        elif not self.plain and ws.subprotocol != SUBPROTOCOL:
            self.handshake.set_exception(
                HandshakeFailed(f"server did not accept subprotocol {SUBPROTOCOL}")
            )
        else:
            self.established = True
            self.handshake.set_result(None)

    def _message(self, data: bytes) -> None:
        now = _now()
        if self.plain:
            self._plain_reply(data, now)
            return
        try:
            obj = _loads(data)
            seq = obj["id"]
            start = self.pending.pop(seq)
        except (ValueError, KeyError, TypeError):
            self.sink.on_unmatched()
            return
        self.waiting -= 1
        error = obj.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            self.sink.on_reply(self, seq, start, now, Outcome.ERROR, str(code))
            return
        expected = self.codec.expected(seq)
        if expected is None or obj.get("data") == expected:
            self.sink.on_reply(self, seq, start, now, Outcome.OK, None)
        else:
            self.sink.on_reply(self, seq, start, now, Outcome.MISMATCH, None)

    def _plain_reply(self, data: bytes, now: int) -> None:
        order = self.order
        if not order:
            self.sink.on_unmatched()
            return
        seq, start, resolved = order.popleft()
        if resolved:  # it timed out already: this is its late reply
            self.sink.on_unmatched()
            return
        self.waiting -= 1
        if data.startswith(b'{"error":'):
            try:
                code = str(_loads(data)["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = None
            if code is not None:
                self.sink.on_reply(self, seq, start, now, Outcome.ERROR, code)
                return
        expected = self.codec.expected(seq)
        if expected is None or data == expected.encode():
            self.sink.on_reply(self, seq, start, now, Outcome.OK, None)
        else:
            self.sink.on_reply(self, seq, start, now, Outcome.MISMATCH, None)

    def _resolve_all(self, outcome: Outcome) -> None:
        for seq, start in self.pending.items():
            self.sink.on_unresolved(self, seq, start, outcome)
        self.pending.clear()
        for seq, start, resolved in self.order:
            if not resolved:
                self.sink.on_unresolved(self, seq, start, outcome)
        self.order.clear()
        self.waiting = 0

    def _expect_close(self) -> None:
        if self._close_timer is None and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_GRACE, self.transport.abort)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _handshake_reason(exc: Exception) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return f"bad handshake: {exc}"


def failure_reason(exc: BaseException) -> str:
    """A short, countable reason for a failed or lost connection."""
    if isinstance(exc, HandshakeFailed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError):
        if exc.errno == 24:
            return "too many open files"
        if exc.__class__.__name__ == "gaierror":
            return f"name resolution: {exc.strerror or exc}"
        return exc.strerror or str(exc) or exc.__class__.__name__
    return str(exc) or exc.__class__.__name__
