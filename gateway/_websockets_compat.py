"""Every use of websockets beyond its documented API, in one place.

The gateway relies on a few internals of ``websockets.asyncio`` (tested with the
range pinned in pyproject.toml). They are all here, behind plain names, so an
upgrade is checked by :func:`check` (run at import: a missing attribute fails the
gateway at start-up, and ``tests/gateway/test_websockets_compat.py`` in CI) and
fixed in this file only:

* :class:`HookedConnection` overrides ``connection_made``, ``connection_lost``,
  ``data_received``, ``pause_writing``, ``resume_writing``, ``process_event`` and
  ``handshake`` of ``ServerConnection`` (asyncio protocol callbacks and websockets'
  private event hook) and turns them into hook methods with no policy of their own.
  It also feeds received bytes to the protocol in slices of at most
  :data:`READ_SLICE` bytes, one slice per event-loop turn, so one socket's
  256 KiB read (tens of thousands of tiny frames) cannot hold the loop.
  Data messages do not go through websockets' message queue and ``recv()``: they are
  reassembled here and handed to :meth:`HookedConnection.on_message` inside
  ``data_received`` (no queue, no task switch per message: about 7 µs of CPU per
  request on a 2-core box, ``bench/echo_server.py --direct``), with the checks
  ``recv()`` makes (UTF-8 of text, at most :data:`MAX_FRAGMENTS` fragments).
  Whole unfragmented data frames are read here without websockets' parser when it
  waits at a frame boundary (:meth:`HookedConnection._take_simple_frames`: the
  checks ``Frame.parse`` makes, about 4 µs less per message); anything else
  (control frames, fragments, a frame cut by the read, a frame websockets would
  refuse) goes to websockets from that boundary on.
  :meth:`HookedConnection.hold_messages` / :meth:`HookedConnection.release_messages`
  stop and restart reading for the owner's flow control.
* :func:`send_now`, :func:`can_send_now`, :func:`flush` write frames through the
  sans-I/O protocol's output and the transport directly (``send_in_progress``,
  ``protocol.writes``, ``protocol.extensions``), for the session's fast path.
* :func:`fail` closes a connection from a synchronous callback.
* :func:`forget_request` drops the handshake request's headers once the socket is open.

It is over the ~400 lines the project aims at, on purpose: issue 10 asked for every
use of a library's internals in one module per library, so an upgrade is checked in
one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import struct
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.messages import MAX_FRAGMENTS
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode, apply_mask
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.streams import StreamReader

__all__ = [
    "MAX_FRAGMENTS",
    "READ_SLICE",
    "HookedConnection",
    "answer_and_close",
    "can_send_now",
    "check",
    "drain_raw",
    "fail",
    "flush",
    "forget_request",
    "lost",
    "send_now",
    "write_raw",
]

# Bytes handed to the websockets parser per event-loop turn and connection. A read
# returns up to 256 KiB: 40,000 six-byte pings, about 0.25 s of parsing in one callback.
READ_SLICE = 8 * 1024

_CONNECTION_ATTRIBUTES = (
    "connection_made",
    "connection_lost",
    "data_received",
    "pause_writing",
    "resume_writing",
    "process_event",
    "handshake",
    "send_data",
    "send_in_progress",
    "request_rcvd",
    "connection_lost_waiter",
    "drain",
    "close_timeout",
)
_PROTOCOL_METHODS = ("send_text", "send_binary", "data_to_send", "fail", "receive_data")
_PROTOCOL_ATTRIBUTES = (
    "writes",
    "extensions",
    "parser",
    "max_message_size",
    "max_fragment_size",
    "current_size",
)
# The generator websockets' frame parser waits in between frames (and only there).
_AT_FRAME_BOUNDARY = StreamReader.at_eof.__code__


def _assigned(name: str, source: str) -> bool:
    # "self.name = ...", "self.name: T = ..." or "self.name, self.other = ..."
    return re.search(rf"self\.{name}\b\s*(:[^=\n]*)?(,[^=\n]*)?=", source) is not None


def check() -> None:
    """Raise RuntimeError naming every internal this module needs that websockets lacks."""
    import websockets.asyncio.connection as connection_module
    import websockets.asyncio.server as server_module

    # Instance attributes are assigned in websockets' source ("self.<name> = ...").
    source = inspect.getsource(connection_module) + inspect.getsource(server_module)
    missing: list[str] = []
    for name in _CONNECTION_ATTRIBUTES:
        if not hasattr(ServerConnection, name) and not _assigned(name, source):
            missing.append(f"ServerConnection.{name}")
    for name in _PROTOCOL_METHODS:
        if not callable(getattr(Protocol, name, None)):
            missing.append(f"Protocol.{name}")
    protocol_source = inspect.getsource(Protocol.__init__)
    for name in _PROTOCOL_ATTRIBUTES:
        if not _assigned(name, protocol_source):
            missing.append(f"Protocol.{name}")
    if "yield from self.reader.at_eof()" not in inspect.getsource(Protocol.parse):
        missing.append("Protocol.parse waiting in reader.at_eof() between frames")
    if "transport" not in inspect.signature(ServerConnection.connection_made).parameters:
        missing.append("ServerConnection.connection_made(transport)")
    if missing:
        raise RuntimeError(
            "this websockets version lacks internals the gateway uses: " + ", ".join(missing)
        )


check()


class HookedConnection(ServerConnection):
    """``ServerConnection`` with hooks; subclasses set the policy.

    Hooks (all synchronous, called on the event loop):

    * :meth:`accept_transport` at TCP accept: return False to refuse the
      connection; the hook must then answer and close ``transport`` itself. A
      refused connection never reaches websockets (no handler task, no handshake).
    * :meth:`head_bytes`: bytes received before the HTTP request was complete.
    * :meth:`on_ping` for each ping frame received.
    * :meth:`attach` a sink: it gets each data message received (text as ``str``,
      binary as ``bytes``), in order, from ``data_received``; ``recv()`` is never used.
      Messages received before a sink is attached wait (and reading stops) until one
      is. A text message that is not UTF-8 closes the connection with 1007, more than
      :data:`MAX_FRAGMENTS` fragments with 1009 (as ``recv()`` would); a sink that
      raises closes it with 1011.
    * :meth:`on_lost` when the connection ends (accepted ones only).
    * ``paused_since`` holds the loop time since when writes are paused (the
      client is not reading), None while they flow.
    """

    handshake_timeout = 10.0
    refused = False
    paused_since: float | None = None
    _backlog: memoryview | None = None  # bytes read but not yet parsed (see READ_SLICE)
    _feed_scheduled = False
    _parsing_paused = False
    _head_received = 0
    _held = False  # hold_messages(): reading stops until release_messages()
    _sink: Callable[[str | bytes], None] | None = None  # see attach()
    _early: list[str | bytes] | None = None  # messages received before attach()
    _fragments: list[bytes] | None = None  # a fragmented message being reassembled
    _fragmented_text = False
    discarding = False  # failed (see fail()): received bytes are dropped unparsed

    # Hooks

    def accept_transport(self, transport: asyncio.Transport) -> bool:
        return True

    def head_bytes(self, total: int) -> bool:
        """Called while the HTTP request is incomplete; False refuses (the hook answers)."""
        return True

    def on_ping(self) -> None:
        pass

    def on_lost(self) -> None:
        pass

    # Messages

    def attach(self, sink: Callable[[str | bytes], None] | None) -> None:
        """Hand every data message to ``sink`` from now on, those waiting first.

        None detaches: later messages are dropped (the owner is done with the socket).
        """
        if sink is None:
            self._sink, self._early = _drop, None
            return
        self._sink = sink
        early, self._early = self._early, None
        self.release_messages()
        for message in early or ():
            sink(message)

    def hold_messages(self) -> None:
        """Stop reading: no more bytes are parsed until :meth:`release_messages`.

        Messages already parsed from the current slice are still delivered (at most
        :data:`READ_SLICE` bytes of them); the socket's buffers then fill and TCP
        pushes back on the client.
        """
        if not self._held:
            self._held = True
            self._pause_parsing()

    def release_messages(self) -> None:
        """Read again after :meth:`hold_messages`."""
        if self._held:
            self._held = False
            self._resume_parsing()

    # websockets / asyncio overrides

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self.accept_transport(transport):
            self.refused = True
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        super().connection_lost(exc)
        self._backlog = None
        self.paused_since = None
        self.on_lost()

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        # websockets' open_timeout also bounds process_request, which would cut a
        # /stream request waiting for its reply: only the wait for the request is bounded.
        async with asyncio.timeout(self.handshake_timeout):
            await asyncio.wait(
                [self.request_rcvd, self.connection_lost_waiter],
                return_when=asyncio.FIRST_COMPLETED,
            )
        await super().handshake(*args, **kwargs)

    def pause_writing(self) -> None:
        if self.refused:
            return
        super().pause_writing()
        self.paused_since = self.loop.time()

    def resume_writing(self) -> None:
        if self.refused:
            return
        super().resume_writing()
        self.paused_since = None

    def eof_received(self) -> bool | None:
        if self.refused:
            return None
        return super().eof_received()

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame):
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                self._message_frame(event)
                return
            if opcode is Opcode.PING:
                self.on_ping()
        super().process_event(event)

    def _message_frame(self, frame: Frame) -> None:
        """Reassemble, decode and hand over a message (what ``recv()`` would return)."""
        if self.discarding:
            return
        fragments = self._fragments
        if frame.opcode is Opcode.CONT:  # the protocol checked a message is open
            assert fragments is not None
            if len(fragments) >= MAX_FRAGMENTS:
                self._fail_message(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
            fragments.append(frame.data)
            if not frame.fin:
                return
            self._fragments = None
            data: bytes = b"".join(fragments)
            text = self._fragmented_text
        elif not frame.fin:
            self._fragments = [frame.data]
            self._fragmented_text = frame.opcode is Opcode.TEXT
            return
        else:
            data, text = frame.data, frame.opcode is Opcode.TEXT
        self._deliver(data, text)

    def _deliver(self, data: bytes, text: bool) -> None:
        """Decode one whole message and hand it to the sink (or keep it until attach())."""
        if text:
            try:
                message: str | bytes = str(data, "utf-8")
            except UnicodeDecodeError as exc:
                self._fail_message(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = bytes(data)
        sink = self._sink
        if sink is None:  # between the handshake and attach()
            if self._early is None:
                self._early = []
            self._early.append(message)
            self.hold_messages()
            return
        try:
            sink(message)
        except Exception:
            self.logger.exception("message handler failed")
            self._fail_message(CloseCode.INTERNAL_ERROR, "internal error")

    def _fail_message(self, code: int, reason: str) -> None:
        self._fragments = None
        fail(self, code, reason, self.close_timeout or 10.0)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.discarding:
            return
        if self._backlog is not None:  # keep byte order behind what is still unparsed
            self._backlog = memoryview(bytes(self._backlog) + data)
            return
        self._feed(memoryview(data))

    # Slicing

    def _feed(self, data: memoryview) -> None:
        if len(data) > READ_SLICE:
            self._backlog = data[READ_SLICE:]
            data = data[:READ_SLICE]
            self.transport.pause_reading()
            self._schedule_feed()
        if self.request is None:
            self._head_received += len(data)
            if not self.head_bytes(self._head_received):
                self._backlog = None
                return
        self._parse(data)

    def _parse(self, data: memoryview) -> None:
        """Take the whole data frames at the front of ``data``; websockets parses the rest."""
        protocol = self.protocol
        if (
            protocol.state is State.OPEN
            and not protocol.extensions
            and protocol.current_size is None  # no fragmented message open
        ):
            parser = protocol.parser
            while (inner := parser.gi_yieldfrom) is not None:
                parser = inner
            if parser.gi_code is _AT_FRAME_BOUNDARY:
                taken = self._take_simple_frames(data)
                if taken == len(data) or self.discarding:
                    return
                data = data[taken:]
        super().data_received(data)  # type: ignore[arg-type]  # any bytes-like is parsed

    def _take_simple_frames(self, data: memoryview) -> int:
        """Deliver the whole, final, masked text/binary frames at the front of ``data``.

        Contract: websockets' parser waits at a frame boundary, the connection is open
        with no extension and no fragmented message. Returns how many bytes were taken,
        always a frame boundary: the first frame that is not such a frame (a control
        frame, a fragment, reserved bits, no mask, over the size limit, or cut by the
        read) and what follows are left to websockets, which treats them as it always
        does. Stops early once the connection fails (:attr:`discarding`).
        """
        protocol = self.protocol
        limit = protocol.max_message_size
        if protocol.max_fragment_size is not None and (
            limit is None or protocol.max_fragment_size < limit
        ):
            limit = protocol.max_fragment_size
        end_of_data = len(data)
        pos = 0
        while pos + 6 <= end_of_data:
            head = data[pos]
            if head != 0x81 and head != 0x82:  # FIN, no RSV bits, text or binary
                break
            length = data[pos + 1] ^ 0x80  # the mask bit must be set
            if length < 126:
                mask_at = pos + 2
            elif length == 126:
                mask_at = pos + 4
                if mask_at + 4 > end_of_data:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
            else:  # 127 (a 64-bit length) or no mask bit
                break
            start = mask_at + 4
            end = start + length
            if end > end_of_data or (limit is not None and length > limit):
                break
            self._deliver(apply_mask(data[start:end], data[mask_at:start]), head == 0x81)
            pos = end
            if self.discarding or protocol.state is not State.OPEN:
                break
        return pos

    def _schedule_feed(self) -> None:
        if not self._feed_scheduled:
            self._feed_scheduled = True
            self.loop.call_soon(self._feed_next)

    def _feed_next(self) -> None:
        self._feed_scheduled = False
        backlog = self._backlog
        if backlog is None or self._parsing_paused or self.transport.is_closing():
            return
        self._backlog = None
        self._feed(backlog)
        if self._backlog is None and not self._parsing_paused:
            self.transport.resume_reading()

    def _pause_parsing(self) -> None:
        self._parsing_paused = True
        self.transport.pause_reading()

    def _resume_parsing(self) -> None:
        self._parsing_paused = False
        if self._backlog is not None:
            self._schedule_feed()
        else:
            self.transport.resume_reading()


def _drop(message: str | bytes) -> None:
    """The sink of a detached connection."""


# Session fast path


def can_send_now(ws: ServerConnection, high_water: int) -> bool:
    """Whether a frame may be written at once (open, no send() running, buffer below mark)."""
    return (
        ws.protocol.state is State.OPEN
        and ws.send_in_progress is None
        and ws.transport.get_write_buffer_size() < high_water
    )


def send_now(ws: ServerConnection, frame: str | bytes) -> None:
    """Queue ``frame`` in the protocol; :func:`flush` writes it (see :func:`can_send_now`).

    Without extensions a server frame is a two-to-ten-byte header and the payload as
    it is (RFC 6455 5.2: final, unmasked), appended to the protocol's own output
    (``Protocol.writes``) so it stays in order with the frames websockets sends;
    ``send_text`` costs about 2.3 µs more per frame. With permessage-deflate the
    protocol frames it.
    """
    protocol = ws.protocol
    if isinstance(frame, str):
        data, opcode = frame.encode(), 0x81
    else:
        data, opcode = frame, 0x82
    if protocol.extensions:
        if opcode == 0x81:
            protocol.send_text(data)
        else:
            protocol.send_binary(data)
        return
    n = len(data)
    if n < 126:
        head = bytes((opcode, n))
    elif n < 65536:
        head = _HEAD_16.pack(opcode, 126, n)
    else:
        head = _HEAD_64.pack(opcode, 127, n)
    # An empty chunk in the protocol's output means "half-close" to flush(): an empty
    # payload is left out.
    protocol.writes += (head, data) if n else (head,)


_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


def flush(ws: ServerConnection) -> None:
    """Write what the protocol has queued, in one socket write."""
    chunks = ws.protocol.data_to_send()
    data = b"".join(chunks)
    if data:
        ws.transport.write(data)
    if b"" in chunks:  # the protocol asks for a half-close after a close frame
        if ws.transport.can_write_eof():
            ws.transport.write_eof()
        else:
            ws.transport.close()


def fail(ws: ServerConnection, code: int, reason: str, abort_after: float) -> None:
    """Close ``ws`` now from synchronous code: send a close frame, parse nothing more.

    The TCP connection is aborted ``abort_after`` seconds later if the client has
    not closed it by then, and at once if its writes are paused (it is not
    reading: the close frame could not reach it).
    """
    transport = ws.transport
    if transport.is_closing():
        return
    if ws.protocol.state is State.OPEN:
        ws.protocol.fail(code, reason)
        ws.send_data()
    if isinstance(ws, HookedConnection):
        # The protocol would discard what follows anyway: drop it before parsing, and
        # what is still waiting to be parsed, so a flood costs no memory while it closes.
        ws.discarding = True
        ws._backlog = None
        transport.resume_reading()  # see the client's EOF (reading may be paused for slicing)
    if getattr(ws, "paused_since", None) is not None:
        transport.abort()
    else:
        ws.loop.call_later(abort_after, transport.abort)


def answer_and_close(ws: ServerConnection, response: bytes) -> None:
    """Write a raw HTTP ``response`` before websockets answered, and close (no handshake)."""
    ws.transport.write(response)
    ws.transport.close()


def forget_request(ws: ServerConnection) -> None:
    """Replace the handshake request (its headers can be large) by its path alone."""
    request = ws.request
    if request is not None:
        ws.request = Request(request.path, Headers())


def lost(ws: ServerConnection) -> asyncio.Future[None]:
    """A future done once ``ws``'s TCP connection is lost (websockets' own waiter)."""
    return ws.connection_lost_waiter  # type: ignore[no-any-return]


def write_raw(ws: ServerConnection, data: bytes) -> None:
    """Write bytes straight to ``ws``'s transport (an HTTP response websockets does not send)."""
    transport = ws.transport
    if not transport.is_closing():
        transport.write(data)


async def drain_raw(ws: ServerConnection) -> None:
    """Wait until ``ws``'s write buffer is below its high-water mark (no-op once it is lost)."""
    with contextlib.suppress(Exception):
        await ws.drain()
