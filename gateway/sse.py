"""``GET /stream/<message>``: one request, its reply as Server-Sent Events.

Contract (see docs/browser.md):

* **Events.** Every event carries an ``id:`` (``<stream>.<n>``). The reply is one
  ``message`` event, or one per chunk of a streamed reply as it arrives (their lines
  as ``data:`` lines; ``\\r\\n`` and ``\\r`` arrive as ``\\n``); the stream always
  ends with ``event: end`` (empty data), then the response ends. A failed request
  sends ``event: error`` whose ``data:`` is the JSON error of plain mode
  (``{"error": {"code": ..., "message": ...}}``) before ``end``.
* **At most once.** A client that sent ``Accept: text/event-stream`` (every
  EventSource) gets the response head at once, with ``retry:`` and an id-only block,
  *before* the request is published. Any reconnect therefore carries
  ``Last-Event-ID``, and a request with ``Last-Event-ID`` is answered ``204`` without
  running anything (:func:`reconnect_response`): a ``204`` stops an EventSource for
  good, so one ``new EventSource(...)`` runs the handler once, whether the page calls
  ``close()`` on ``end`` or not, and even if the gateway died mid-request.
* **HTTP status mapping** for other clients (curl, ``fetch`` without that Accept):
  the head waits for the outcome; an error is a plain HTTP error (504 timeout, 503
  busy/unavailable, 413 too large, 502 processor error, 400 bad request) whose body
  is the JSON error; a reply (or the first chunk) starts a ``200`` event stream as
  above, after which a failure can only be an ``error`` event.
* **The client goes away** while waiting: the request is cancelled (its reply, if it
  still comes, is dropped; a streaming handler is told to stop).
* The response is written straight to the connection's transport (no
  Content-Length, ``Connection: close``), so events can be sent as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from time import perf_counter
from typing import TYPE_CHECKING
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from gateway import _websockets_compat as compat
from gateway import http
from gateway.requests import Failure, Request, Result
from gateway.security import header_values
from hopline.wire.envelope import encode_plain_error
from hopline.wire.errors import HTTP_STATUS_BY_CODE, ErrorCode

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = [
    "EVENT_STREAM_TYPE",
    "KEEPALIVE_INTERVAL",
    "RETRY_MS",
    "EventStream",
    "format_event",
    "head_response",
    "is_reconnect",
    "reconnect_response",
    "stream",
    "wants_event_stream",
]

EVENT_STREAM_TYPE = "text/event-stream; charset=utf-8"
# The reconnection delay announced to EventSource: a reconnect only ever gets the
# 204 that stops it, so a short delay just ends a forgotten EventSource sooner.
RETRY_MS = 2000
# A comment line while a reply is awaited keeps proxies from closing an idle response.
KEEPALIVE_INTERVAL = 15.0
# Bound on the wait for a client to take the last bytes after the stream ended.
FLUSH_TIMEOUT = 10.0

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def wants_event_stream(request: HttpRequest) -> bool:
    """Whether the client asked for ``text/event-stream`` (EventSource always does)."""
    return any(
        "text/event-stream" in value.lower() for value in header_values(request.headers, "Accept")
    )


def is_reconnect(request: HttpRequest) -> bool:
    """Whether the request carries ``Last-Event-ID`` (an EventSource reconnecting)."""
    return bool(header_values(request.headers, "Last-Event-ID"))


def reconnect_response() -> Response:
    """``204`` for a reconnect: streams never resume, and EventSource stops on a 204."""
    return http.respond(204, b"", EVENT_STREAM_TYPE)


def head_response() -> Response:
    """What ``HEAD /stream/...`` answers once admitted: the head of a stream, nothing run."""
    return http.respond(200, b"", EVENT_STREAM_TYPE)


def format_event(data: str, *, event_id: str, event: str | None = None) -> str:
    """One SSE event: ``event:`` (if any), ``id:``, one ``data:`` line per line of ``data``."""
    head = f"event: {event}\n" if event else ""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"{head}id: {event_id}\n{lines}\n"


class EventStream:
    """An event-stream response written straight to a connection's transport.

    ``start()`` writes the status line, headers and the ``retry:`` + id-only block;
    ``send()`` writes one event; ``finish()`` closes the connection once the bytes
    are out (or after :data:`FLUSH_TIMEOUT`). Writes after the client went away are
    ignored.
    """

    def __init__(self, conn: ServerConnection, extra_headers: dict[str, str]) -> None:
        self.conn = conn
        self.extra_headers = extra_headers
        self.stream_id = secrets.token_urlsafe(9)
        self.started = False
        self._seq = 0

    def _write(self, text: str) -> None:
        compat.write_raw(self.conn, text.encode())

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self.stream_id}.{self._seq}"

    def start(self) -> None:
        """Send the head (200) and the block that sets ``retry`` and the first event id."""
        headers = Headers(
            [
                ("Content-Type", EVENT_STREAM_TYPE),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
                ("X-Accel-Buffering", "no"),  # nginx: do not buffer the stream
            ]
        )
        for name, value in self.extra_headers.items():
            headers[name] = value
        self.started = True
        head = "HTTP/1.1 200 OK\r\n" + str(headers)
        self._write(f"{head}retry: {RETRY_MS}\nid: {self.stream_id}.0\n\n")

    def send(self, data: str, event: str | None = None) -> None:
        """One event with the next id."""
        self._write(format_event(data, event_id=self._next_id(), event=event))

    def keepalive(self) -> None:
        """A comment line: nothing for the client, traffic for the proxies."""
        self._write(":\n\n")

    async def drain(self) -> None:
        """Wait while the client is not reading (the gateway's sweeper cuts it at its deadline)."""
        await compat.drain_raw(self.conn)

    async def finish(self) -> None:
        """Close the connection once the written bytes are out (at most FLUSH_TIMEOUT later)."""
        await self.drain()
        self.conn.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await asyncio.shield(compat.lost(self.conn))


async def stream(
    gw: Gateway, conn: ServerConnection, request: HttpRequest, raw_message: str
) -> Response:
    """Run one ``/stream`` request and answer it (see the module docstring).

    The caller has applied the method, origin, token and connection-slot checks.
    Returns the response for websockets to send, or a placeholder once the
    response was written here and the connection closed (websockets then sends
    nothing).
    """
    out = EventStream(conn, http.cors_for(gw, request))  # what process_response would add
    if wants_event_stream(request):
        out.start()  # before publishing: any reconnect now carries Last-Event-ID
    message = unquote(raw_message)
    if len(message.encode()) > gw.settings.max_message_size:
        result: Result | None = Failure(ErrorCode.TOO_LARGE, "message exceeds the size limit")
    else:
        result = await _run(gw, conn, message, out)
    if result is None:  # the client went away; the request was cancelled
        return await _closed(conn)
    if isinstance(result, Failure):
        if not out.started:
            status = HTTP_STATUS_BY_CODE[result.code]
            body = encode_plain_error(result.code, result.message) + "\n"
            return http.respond(status, body, http.JSON_TYPE)
        out.send(encode_plain_error(result.code, result.message), event="error")
    else:
        if not out.started:
            out.start()
        out.send(_text(result))
    out.send("", event="end")
    await out.finish()
    return await _closed(conn)


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode(errors="replace")


async def _run(
    gw: Gateway, conn: ServerConnection, message: str, out: EventStream
) -> Result | None:
    """Publish ``message``, send the chunks of a streamed reply as they come, and return
    the outcome (the last chunk or whole reply, or the failure); None if the client left.

    The first chunk starts the response (200) for a client that has not got its head
    yet; from then on a failure can only be an ``error`` event.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Result] = loop.create_future()
    chunks: list[str] = []
    news = asyncio.Event()

    def on_chunk(request: Request, chunk: str | bytes) -> None:
        chunks.append(_text(chunk))
        news.set()

    def on_done(request: Request, result: Result) -> None:
        gw.metrics.latency.observe(perf_counter() - t0)  # as for /ws: request to outcome
        if not done.done():
            done.set_result(result)
        news.set()

    t0 = perf_counter()
    request = Request(message, on_done, None, on_chunk)
    gw.broker.submit(request)
    lost = compat.lost(conn)
    try:
        while True:
            if chunks:
                if not out.started:
                    out.start()
                for chunk in chunks:
                    out.send(chunk)
                chunks.clear()
                await out.drain()  # a client that does not read holds the stream back
                continue  # chunks that came during the drain go before the outcome
            if done.done():
                return done.result()
            if lost.done():
                gw.broker.cancel(request)  # the processor is told; a generator is closed
                return None
            news.clear()
            waiter = loop.create_task(news.wait())
            try:
                await asyncio.wait(
                    [waiter, lost], timeout=KEEPALIVE_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            if not news.is_set() and not lost.done() and out.started:
                out.keepalive()
    except asyncio.CancelledError:
        gw.broker.cancel(request)
        raise


async def _closed(conn: ServerConnection) -> Response:
    """Once the connection is closed, a placeholder that websockets will not send."""
    lost = compat.lost(conn)
    if not lost.done():
        conn.transport.abort()
        await asyncio.shield(lost)
    return http.respond(204, b"", "text/plain")
