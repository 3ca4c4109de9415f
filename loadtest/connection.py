"""One load-test socket: an asyncio protocol around the websockets sans-I/O client.

No task and no future per request: replies are handled in ``data_received`` and
the next request of a closed loop is written from that same callback; writes made
while handling one read are flushed to the transport once.

Encoding and matching belong to the client core (:class:`hopline.client.core.ClientCore`):
request frames come from a template built by :func:`hopline.wire.envelope.request_template`
(see :class:`loadtest.messages.Codec`), each reply goes through ``ClientCore.receive``
(by id for ``hopline.v1``, by order in plain mode) and timeouts through
``ClientCore.expire``. The connection reports every outcome to its :class:`Sink`
(the worker). Handshake failures use the client's one wording
(:func:`hopline.client.handshake.classify`).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import TYPE_CHECKING, Protocol

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.speedups import apply_mask
from websockets.typing import Subprotocol

from hopline.client.core import ClientCore, Failed, Reply, Unmatched
from hopline.client.handshake import SUBPROTOCOL_REFUSED, auth_headers, classify
from hopline.wire.envelope import SUBPROTOCOL
from loadtest.stats import Outcome

if TYPE_CHECKING:
    from websockets.uri import WebSocketURI

    from loadtest.messages import Codec

__all__ = ["Connection", "HandshakeFailed", "Sink", "failure_reason", "text_frame"]

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
        first_ns: int | None = None,
        chunks: int = 1,
    ) -> None:
        """Request ``seq`` got a reply at ``now_ns`` (``code`` for error replies).

        A streamed reply: ``first_ns`` is when its first chunk arrived and ``chunks``
        the frames it took (the last one included).
        """

    def on_unresolved(self, conn: Connection, seq: int, start_ns: int, outcome: Outcome) -> None:
        """Request ``seq`` timed out or was lost with its connection."""

    def on_unmatched(self) -> None:
        """A reply matched no outstanding request."""

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        """An established connection closed."""


class Connection(asyncio.Protocol):
    """One WebSocket connection of a worker (see the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        index: int,
        uri: WebSocketURI,
        codec: Codec,
        token: str | None = None,
        timeout_ns: int | None = None,
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
        self._streams: dict[int, tuple[int, int]] = {}  # seq -> (first chunk ns, chunks)
        self.core: ClientCore[None] = ClientCore(codec.protocol, timeout_ns)  # at: start ns
        self.dirty = False
        self._out: list[bytes] = []  # request frames not yet written
        self._fragments: list[bytes] | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.ws.connect()
        request.headers.update(auth_headers(self._token))
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
        # The value is the send time too: a chunk restarts the core's timeout clock (its
        # ``at``), while latencies are measured from the send.
        self.core.track(seq, start_ns, start_ns)

    @property
    def waiting(self) -> int:
        """Requests sent and not resolved."""
        return len(self.core)

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

    def expire(self, now_ns: int) -> None:
        """Resolve as timed out every request started ``timeout_ns`` or more before ``now_ns``."""
        for late in self.core.expire(now_ns):
            if self._streams:
                self._streams.pop(late.id, None)  # type: ignore[arg-type]
            self.sink.on_unresolved(self, late.id, late.value, Outcome.TIMEOUT)  # type: ignore[arg-type]

    # internals

    def _handshake_done(self) -> None:
        ws = self.ws
        if self.handshake.done():
            return
        exc = ws.handshake_exc
        if exc is not None:
            self.handshake.set_exception(HandshakeFailed(classify(exc).reason))
        elif not self.plain and ws.subprotocol != SUBPROTOCOL:
            self.handshake.set_exception(HandshakeFailed(SUBPROTOCOL_REFUSED.reason))
        else:
            self.established = True
            self.handshake.set_result(None)

    def _message(self, data: bytes) -> None:
        now = _now()
        event = self.core.receive(data, now)
        cls = event.__class__
        if cls is Reply:
            seq: int = event.id  # type: ignore[union-attr, assignment]
            expected = self.codec.expected(seq)
            reply = event.data  # type: ignore[union-attr]
            if expected is None or reply == (expected.encode() if self.plain else expected):
                outcome = Outcome.OK
            else:
                outcome = Outcome.MISMATCH
            if self._streams and seq in self._streams:
                first, n = self._streams.pop(seq)
                self.sink.on_reply(self, seq, event.value, now, outcome, None, first, n + 1)  # type: ignore[union-attr, arg-type]
            else:
                self.sink.on_reply(self, seq, event.value, now, outcome, None)  # type: ignore[union-attr, arg-type]
        elif cls is Failed:
            code = event.failure.code.value  # type: ignore[union-attr]
            if self._streams:
                self._streams.pop(event.id, None)  # type: ignore[union-attr, arg-type]
            self.sink.on_reply(self, event.id, event.value, now, Outcome.ERROR, code)  # type: ignore[union-attr, arg-type]
        elif cls is Unmatched:
            self.sink.on_unmatched()
        else:  # a Chunk: a streamed reply goes on; the request is timed to its last frame
            key: int = event.id  # type: ignore[union-attr, assignment]
            state = self._streams.get(key)
            if state is None:
                self._streams[key] = (now, 1)
            else:
                self._streams[key] = (state[0], state[1] + 1)

    def _resolve_all(self, outcome: Outcome) -> None:
        for lost in self.core.close():
            self.sink.on_unresolved(self, lost.id, lost.value, outcome)  # type: ignore[arg-type]

    def _expect_close(self) -> None:
        if self._close_timer is None and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_GRACE, self.transport.abort)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def failure_reason(exc: BaseException, timeout: float | None = None) -> str:
    """A short, countable reason for a failed or lost connection (the client's one wording)."""
    if isinstance(exc, HandshakeFailed):
        return str(exc)
    return classify(exc, timeout).reason
