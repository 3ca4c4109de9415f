"""One WebSocket connection: read loop, in-flight window, reply ordering.

Contract:

* Every frame read becomes one request submitted to the broker at once; the
  session does not wait for a reply before reading the next frame.
* At most ``window`` requests are in flight (a request stays in flight until its
  reply or error frame has been handed to the socket; malformed and rate-limited
  frames count too); when the window is full the session stops reading, so the
  socket's buffers fill and TCP pushes back on the client.
* With a rate limit, each frame spends one token of the socket's
  :class:`~gateway.security.TokenBucket`; a frame over the limit is not published
  and gets a ``busy`` error in its place.
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
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from gateway.broker import Broker
from gateway.metrics import GatewayMetrics
from gateway.requests import Request, Result
from gateway.security import TokenBucket
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

__all__ = ["Session"]

log = logging.getLogger(__name__)

_UNSET: Any = object()

RATE_LIMITED = "request rate limit exceeded"


class Session:
    """Serve one accepted WebSocket until either side closes it.

    Args:
        ws: the accepted connection.
        broker: where requests go.
        metrics: the gateway's metrics.
        window: requests in flight at most.
        rate_limit: requests per second on average (0: no limit).
        rate_burst: token bucket size (0: ``max(1, rate_limit)``).
    """

    def __init__(
        self,
        ws: ServerConnection,
        broker: Broker,
        metrics: GatewayMetrics,
        window: int,
        rate_limit: float = 0.0,
        rate_burst: int = 0,
    ) -> None:
        self.ws = ws
        self.broker = broker
        self.metrics = metrics
        self.window = window
        self.envelope = ws.subprotocol == SUBPROTOCOL
        self._loop = asyncio.get_running_loop()
        self._outstanding: set[Request] = set()
        self._ordered: deque[list[Any]] = deque()  # plain mode: [result, t0] in request order
        # The writer task, its queue and the window event exist only once needed (a
        # slow client, a full window): an idle socket costs a few KiB less without them.
        self._outgoing: deque[tuple[str | bytes, bool]] | None = None  # (frame, ends a request)
        self._outgoing_ready: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._window_open: asyncio.Event | None = None
        self._in_flight = 0
        self._bucket: TokenBucket | None = None
        if rate_limit > 0:
            burst = rate_burst or max(1, int(rate_limit))
            self._bucket = TokenBucket(rate_limit, burst, self._loop.time())
        self._writer_done = False
        self._flush_scheduled = False
        self._write_high_water = ws.transport.get_write_buffer_limits()[1]

    async def run(self) -> None:
        """Read frames until the connection closes, then clean up."""
        try:
            await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            for request in self._outstanding:
                self.broker.cancel(request)
            self._outstanding.clear()
            writer = self._writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer

    async def _read_loop(self) -> None:
        ws, window, submit = self.ws, self.window, self.broker.submit
        envelope, bucket = self.envelope, self._bucket
        while True:
            if self._in_flight >= window:
                if self._window_open is None:
                    self._window_open = asyncio.Event()
                self._window_open.clear()
                await self._window_open.wait()
                if self._writer_done:
                    return
            frame = await ws.recv()
            t0 = perf_counter()  # latency clock (uvloop's loop.time() has 1 ms steps)
            allowed = bucket is None or bucket.take(self._loop.time())
            if envelope:
                try:
                    env = decode_envelope(frame)
                except ProtocolError as exc:
                    self._refuse(
                        encode_envelope_error(exc.client_id, ErrorCode.BAD_REQUEST, str(exc)),
                        ErrorCode.BAD_REQUEST,
                    )
                    continue
                if not allowed:
                    self._refuse(
                        encode_envelope_error(env.id, ErrorCode.BUSY, RATE_LIMITED), ErrorCode.BUSY
                    )
                    continue
                request = Request(
                    env.data, self._on_envelope_done, (env.id, t0), self._on_envelope_chunk
                )
            else:
                slot = [_UNSET, t0]
                self._ordered.append(slot)
                request = Request(frame, self._on_plain_done, slot)
            self._in_flight += 1
            self._outstanding.add(request)
            if allowed:
                submit(request)
            else:
                self.metrics.requests.inc()
                self.metrics.errors(ErrorCode.BUSY).inc()
                request.resolve(Failure(ErrorCode.BUSY, RATE_LIMITED))

    def _refuse(self, frame: str, code: ErrorCode) -> None:
        """Answer a frame that is not published (hopline.v1 only: no ordering to keep)."""
        self.metrics.requests.inc()
        self.metrics.errors(code).inc()
        self._in_flight += 1
        self._emit(frame, ends_request=True)

    def _on_envelope_done(self, request: Request, result: Result) -> None:
        client_id, t0 = request.token
        self._outstanding.discard(request)
        self.metrics.latency.observe(perf_counter() - t0)
        if isinstance(result, Failure):
            frame = encode_envelope_error(client_id, result.code, result.message)
        else:
            data = result if isinstance(result, str) else result.decode(errors="replace")
            frame = encode_envelope_reply(client_id, data)
        self._emit(frame, ends_request=True)

    def _on_envelope_chunk(self, request: Request, chunk: str | bytes) -> None:
        """A chunk of a streamed reply: ``{"id", "data", "more": true}`` (the request goes on)."""
        data = chunk if isinstance(chunk, str) else chunk.decode(errors="replace")
        self._emit(encode_envelope_chunk(request.token[0], data), ends_request=False)

    def _on_plain_done(self, request: Request, result: Result) -> None:
        slot = request.token
        self._outstanding.discard(request)
        slot[0] = result
        ordered = self._ordered
        now = perf_counter()
        while ordered and ordered[0][0] is not _UNSET:
            done, t0 = ordered.popleft()
            self.metrics.latency.observe(now - t0)
            if isinstance(done, Failure):
                self._emit(encode_plain_error(done.code, done.message), ends_request=True)
            else:
                self._emit(done, ends_request=True)

    def _emit(self, frame: str | bytes, ends_request: bool) -> None:
        """Send ``frame`` after the frames before it.

        Fast path: while nothing waits in the writer queue and the socket's write
        buffer is below its high-water mark, the frame goes straight to the
        protocol and every frame emitted in this event-loop tick leaves in one
        socket write (no task switch, no syscall per frame). Otherwise the writer
        task sends it, waiting for the client to drain its buffer.
        """
        ws = self.ws
        if (
            not self._outgoing
            and ws.protocol.state is State.OPEN
            and ws.send_in_progress is None
            and ws.transport.get_write_buffer_size() < self._write_high_water
        ):
            if isinstance(frame, str):
                ws.protocol.send_text(frame.encode())
            else:
                ws.protocol.send_binary(frame)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            if ends_request:
                self._request_sent()
            return
        if self._outgoing is None:
            self._outgoing = deque()
            self._outgoing_ready = asyncio.Event()
        if self._writer is None:
            self._writer = self._loop.create_task(self._write_loop())
        self._outgoing.append((frame, ends_request))
        assert self._outgoing_ready is not None
        self._outgoing_ready.set()

    def _request_sent(self) -> None:
        """One reply left: reopen the window if the reader is parked on it."""
        self._in_flight -= 1
        if self._window_open is not None and self._in_flight < self.window:
            self._window_open.set()

    def _flush(self) -> None:
        """Write what the fast path queued in the protocol, in one socket write."""
        self._flush_scheduled = False
        ws = self.ws
        chunks = ws.protocol.data_to_send()
        data = b"".join(chunks)
        if data:
            ws.transport.write(data)
        if b"" in chunks:  # the protocol asks for a half-close after a close frame
            if ws.transport.can_write_eof():
                ws.transport.write_eof()
            else:
                ws.transport.close()

    async def _write_loop(self) -> None:
        ws, outgoing, ready = self.ws, self._outgoing, self._outgoing_ready
        assert outgoing is not None and ready is not None
        try:
            while True:
                await ready.wait()
                ready.clear()
                while outgoing:
                    frame, ends_request = outgoing.popleft()
                    await ws.send(frame)
                    if ends_request:
                        self._request_sent()
        finally:
            # The socket is gone (or the session ends): a reader parked on a full
            # window must not wait for sends that will never happen.
            self._writer_done = True
            if self._window_open is not None:
                self._window_open.set()
