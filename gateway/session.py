"""One WebSocket connection: read loop, in-flight window, reply ordering.

Contract:

* Every message received becomes one request submitted to the broker at once,
  inside the connection's ``data_received`` (no ``recv()``, no task switch per
  message; see :meth:`~gateway._websockets_compat.HookedConnection.attach`); the
  session does not wait for a reply before taking the next message.
* At most ``window`` requests are in flight (a request stays in flight until its
  reply or error frame has been handed to the socket; malformed and rate-limited
  frames count too); when the window is full the session stops reading, so the
  socket's buffers fill and TCP pushes back on the client. Messages already parsed
  from the last read (at most one read slice) wait in order until it reopens.
* At most ``max_in_flight_bytes`` request bytes are in flight too (checked before
  reading, like the window; see :class:`~gateway.ordering.Flow`).
* With a rate limit, each frame (and each ping) spends one token of the socket's
  :class:`~gateway.security.RateGuard`; a frame over the limit is not published
  and gets a ``busy`` error in its place; a socket that keeps exceeding the limit
  past the grace is closed with 1008.
* Replies that wait for a slow client are capped at ``max_send_queue`` bytes
  (beyond the first one queued); past that the socket is closed with 1008.
* :attr:`Session.last_active` (``perf_counter``) is when the last frame was read or
  the last answer left; the gateway closes sockets idle for ``idle_timeout``.
* A client that stops reading blocks the writer (and so, through the window, the
  reader); the gateway's sweeper cuts such a socket after its send deadline, and
  the session then ends like any closed one.
* Plain mode delivers replies (and error frames) in request order, a streamed
  reply as one frame (its chunks joined); ``hopline.v1`` delivers each as soon as it
  arrives, tagged with the client's id, and every chunk of a streamed reply but the
  last as ``{"id", "data", "more": true}`` the moment it arrives (the last chunk is
  the ordinary reply frame; an error mid-stream the ordinary error frame).
* When the socket closes, its outstanding requests are cancelled: their replies,
  if they still come, are dropped by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from time import perf_counter

from websockets.exceptions import ConnectionClosed

from gateway import _websockets_compat as compat
from gateway.broker import Broker
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.ordering import Flow, Slot
from gateway.requests import Request, Result
from gateway.security import RateGuard, Verdict
from hopline.wire.envelope import (
    SUBPROTOCOL,
    ProtocolError,
    decode_envelope,
    encode_envelope_chunk,
    encode_envelope_error,
    encode_envelope_reply,
    encode_plain_error,
)
from hopline.wire.errors import ErrorCode, Failure

__all__ = ["POLICY_VIOLATION", "RATE_LIMITED", "Session"]

log = logging.getLogger(__name__)

RATE_LIMITED = "request rate limit exceeded"
POLICY_VIOLATION = 1008


class Session:
    """Serve one accepted WebSocket until either side closes it.

    Args:
        ws: the accepted connection (its messages are taken through ``attach``).
        broker: where requests go.
        metrics: the gateway's metrics.
        settings: ``window``, ``max_in_flight_bytes``, ``rate_limit``, ``rate_burst``,
            ``rate_grace``, ``max_send_queue`` and ``write_timeout`` are read.
    """

    def __init__(
        self,
        ws: compat.HookedConnection,
        broker: Broker,
        metrics: GatewayMetrics,
        settings: GatewaySettings,
    ) -> None:
        self.ws = ws
        self.broker = broker
        self.metrics = metrics
        self.settings = settings
        self.envelope = ws.subprotocol == SUBPROTOCOL
        self._loop = asyncio.get_running_loop()
        self.flow = Flow(settings.window, settings.max_in_flight_bytes)
        self._outstanding: set[Request] = set()
        # The writer task, its queue and the window event exist only once needed (a
        # slow client, a full window): an idle socket costs a few KiB less without them.
        # (frame, size of the request it ends, or None for a chunk of a streamed reply)
        self._outgoing: deque[tuple[str | bytes, int | None]] | None = None
        self._outgoing_ready: asyncio.Event | None = None
        self._queued_bytes = 0  # bytes of frames in _outgoing
        self._writer: asyncio.Task[None] | None = None
        # Messages parsed while the window was full, in order (None: reading).
        self._held: deque[str | bytes] | None = None
        self._taking_held = False
        self._settled: asyncio.Event | None = None  # see settle()
        self.guard: RateGuard | None = None
        if settings.rate_limit > 0:
            burst = settings.rate_burst or max(1, int(settings.rate_limit))
            self.guard = RateGuard(
                settings.rate_limit, burst, settings.rate_grace, self._loop.time()
            )
        self._writer_done = False
        self._closing = False  # close() was called
        self._lost = False  # the connection ended (see connection_lost)
        self._flush_scheduled = False
        self._write_high_water = ws.transport.get_write_buffer_limits()[1]
        self.last_active = perf_counter()

    async def run(self) -> None:
        """Take messages until the connection is lost, then clean up."""
        ws = self.ws
        try:
            ws.attach(self._on_message)
            await asyncio.shield(compat.lost(ws))
        finally:
            ws.attach(None)
            self._held = None
            for request in self._outstanding:
                self.broker.cancel(request)
            self._outstanding.clear()
            self.flow.clear()
            writer = self._writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer
            if self._settled is not None:
                self._settled.set()

    @property
    def idle(self) -> bool:
        """Nothing in flight (the idle timeout may apply)."""
        return self.flow.in_flight == 0

    async def settle(self) -> None:
        """Return once every frame read so far has been answered (or the session ended)."""
        if self.flow.in_flight == 0 or self._writer_done:
            return
        if self._settled is None:
            self._settled = asyncio.Event()
        self._settled.clear()
        await self._settled.wait()

    def close(self, code: int, reason: str) -> None:
        """Close the socket now (from synchronous code); the read loop then ends.

        Answers still due are dropped. The TCP connection is aborted if the client
        has not closed it within ``min(write_timeout, close_timeout)``.
        """
        if self._closing:
            return
        self._closing = True
        log.info("closing connection from %s: %s", self.ws.remote_address, reason)
        abort_after = min(self.settings.write_timeout, self.ws.close_timeout or 10.0)
        compat.fail(self.ws, code, reason, abort_after)

    def connection_lost(self) -> None:
        """The TCP connection ended: messages still held are dropped."""
        self._lost = True
        self._held = None

    def on_ping(self) -> None:
        """A ping spends a token of the rate limit like a frame (its pong is already queued)."""
        guard = self.guard
        if guard is not None and guard.check(self._loop.time()) is Verdict.CLOSE:
            self.close(POLICY_VIOLATION, RATE_LIMITED)

    def _on_message(self, frame: str | bytes) -> None:
        """A message from the client (the connection's sink); holds it while the window is full."""
        held = self._held
        if held is not None:
            held.append(frame)
            return
        self._take(frame)
        if not self.flow.readable and not self._closing and self._held is None:
            self._held = deque()
            self.ws.hold_messages()

    def _take_held(self) -> None:
        """The window reopened: take the messages held, then read again (unless full again)."""
        held = self._held
        if held is None or self._taking_held:
            return
        self._taking_held = True
        try:
            flow = self.flow
            while held and flow.readable and not self._closing:
                self._take(held.popleft())
            if flow.readable and self._held is held:
                self._held = None
                self.ws.release_messages()
        finally:
            self._taking_held = False

    def _take(self, frame: str | bytes) -> None:
        """Make ``frame`` a request (or refuse it at once); the window has room."""
        if self._closing or self._lost:
            return
        flow = self.flow
        t0 = perf_counter()  # latency clock (uvloop's loop.time() has 1 ms steps)
        self.last_active = t0
        size = len(frame)
        guard = self.guard
        verdict = Verdict.PASS if guard is None else guard.check(self._loop.time())
        if verdict is Verdict.CLOSE:
            self.close(POLICY_VIOLATION, RATE_LIMITED)
            return
        allowed = verdict is Verdict.PASS
        if self.envelope:
            try:
                env = decode_envelope(frame)
            except ProtocolError as exc:
                self._refuse(
                    encode_envelope_error(exc.client_id, ErrorCode.BAD_REQUEST, str(exc)),
                    ErrorCode.BAD_REQUEST,
                )
                return
            if not allowed:
                self._refuse(
                    encode_envelope_error(env.id, ErrorCode.BUSY, RATE_LIMITED), ErrorCode.BUSY
                )
                return
            flow.admit(size)
            request = Request(
                env.data, self._on_envelope_done, (env.id, t0, size), self._on_envelope_chunk
            )
        else:
            request = Request(frame, self._on_plain_done, flow.slot(size, t0))
        self._outstanding.add(request)
        if allowed:
            self.broker.submit(request)
        else:
            self.metrics.requests.inc()
            self.metrics.errors(ErrorCode.BUSY).inc()
            request.resolve(Failure(ErrorCode.BUSY, RATE_LIMITED))

    def _refuse(self, frame: str, code: ErrorCode) -> None:
        """Answer a frame that is not published (hopline.v1 only: no ordering to keep)."""
        self.metrics.requests.inc()
        self.metrics.errors(code).inc()
        self.flow.admit(0)
        self._emit(frame, 0)

    def _on_envelope_done(self, request: Request, result: Result) -> None:
        client_id, t0, size = request.token
        self._outstanding.discard(request)
        self.metrics.latency.observe(perf_counter() - t0)
        if isinstance(result, Failure):
            frame = encode_envelope_error(client_id, result.code, result.message)
        else:
            data = result if isinstance(result, str) else result.decode(errors="replace")
            frame = encode_envelope_reply(client_id, data)
        self._emit(frame, size)

    def _on_envelope_chunk(self, request: Request, chunk: str | bytes) -> None:
        """A chunk of a streamed reply: ``{"id", "data", "more": true}`` (the request goes on)."""
        data = chunk if isinstance(chunk, str) else chunk.decode(errors="replace")
        self._emit(encode_envelope_chunk(request.token[0], data), None)

    def _on_plain_done(self, request: Request, result: Result) -> None:
        self._outstanding.discard(request)
        ready = self.flow.resolve(request.token, result)
        if not ready:
            return
        now = perf_counter()
        observe = self.metrics.latency.observe
        slot: Slot
        for slot in ready:
            observe(now - slot.t0)
            done = slot.result
            if isinstance(done, Failure):
                self._emit(encode_plain_error(done.code, done.message), slot.size)
            else:
                self._emit(done, slot.size)

    def _emit(self, frame: str | bytes, size: int | None) -> None:
        """Send ``frame``, the answer to a request of ``size`` bytes, after the frames before it.

        ``size`` None: the frame does not end its request (a chunk of a streamed reply).

        Fast path: while nothing waits in the writer queue and the socket's write
        buffer is below its high-water mark, the frame goes straight to the
        protocol and every frame emitted in this event-loop tick leaves in one
        socket write (no task switch, no syscall per frame). Otherwise the writer
        task sends it, waiting for the client to drain its buffer; more than
        ``max_send_queue`` bytes waiting closes the socket.
        """
        ws = self.ws
        if not self._outgoing and compat.can_send_now(ws, self._write_high_water):
            compat.send_now(ws, frame)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            if size is not None:
                self._request_sent(size)
            return
        if self._outgoing is None:
            self._outgoing = deque()
            self._outgoing_ready = asyncio.Event()
        if self._writer_done or self._closing:
            return
        if self._outgoing and self._queued_bytes + len(frame) > self.settings.max_send_queue:
            self._outgoing.clear()
            self._queued_bytes = 0
            self.close(POLICY_VIOLATION, "send queue full: the client reads too slowly")
            return
        if self._writer is None:
            self._writer = self._loop.create_task(self._write_loop())
        self._outgoing.append((frame, size))
        self._queued_bytes += len(frame)
        assert self._outgoing_ready is not None
        self._outgoing_ready.set()

    def _request_sent(self, size: int) -> None:
        """One answer left: reopen the window if the reader is parked on it."""
        flow = self.flow
        if flow.sent(size) and self._held is not None:
            self._take_held()
        if flow.in_flight == 0:
            self.last_active = perf_counter()
            if self._settled is not None:
                self._settled.set()

    def _flush(self) -> None:
        """Write what the fast path queued in the protocol, in one socket write."""
        self._flush_scheduled = False
        compat.flush(self.ws)

    async def _write_loop(self) -> None:
        ws, outgoing, ready = self.ws, self._outgoing, self._outgoing_ready
        assert outgoing is not None and ready is not None
        try:
            while True:
                await ready.wait()
                ready.clear()
                while outgoing:
                    frame, size = outgoing.popleft()
                    self._queued_bytes -= len(frame)
                    await ws.send(frame)
                    if size is not None:
                        self._request_sent(size)
        finally:
            # The socket is gone (or the session ends): nothing more is sent.
            self._writer_done = True
            if self._settled is not None:
                self._settled.set()
