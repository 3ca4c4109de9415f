"""The asyncio client: one WebSocket connection to a gateway, many requests at once.

::

    async with connect("ws://localhost:8000/ws", token=None) as client:
        reply = await client.request("hello")                   # "hello world"
        a, b = await asyncio.gather(client.request("a"), client.request("b"))
        async for chunk in client.stream("x"):                   # streamed replies
            ...

A thin layer over :class:`~hopline.client.core.ClientCore` (which holds all of the
protocol) and websockets' asyncio client: one reader task feeds the core, one timer
expires requests at the core's next deadline. Nothing here parses or builds a frame.

Errors: :class:`~hopline.client.errors.RequestError` (an error reply or a timeout,
with ``.code``), :class:`~hopline.client.errors.ConnectError` (the connection could
not be opened, with ``.retryable``), :class:`~hopline.client.errors.ConnectionLost`
(it ended before the reply), :class:`~hopline.client.errors.InvalidURL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Generator
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from hopline.client.core import (
    Chunk,
    ClientCore,
    Failed,
    Mode,
    Reply,
    Unanswered,
    Unmatched,
    describe_close,
)
from hopline.client.errors import ConnectError, ConnectionLost, RequestError
from hopline.client.handshake import SUBPROTOCOL_REFUSED, auth_headers, classify, validate_url
from hopline.wire.envelope import SUBPROTOCOL, ClientId
from hopline.wire.errors import ErrorCode

__all__ = ["Client", "connect"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds a request may wait for its reply


class _Stream(asyncio.Queue[tuple[bool, Any]]):
    """Where the frames of one streamed request go: ``(last, data or exception)``."""


class Client:
    """One open connection to a gateway (get one from :func:`connect`).

    Any number of requests may be outstanding at once; each gets its own reply
    (``hopline.v1`` matches replies by id, plain mode by order).

    Attributes:
        url: the gateway's URL.
        plain: plain mode (no envelopes, replies in request order).
        timeout: seconds a request waits for its reply (or its next chunk); None: forever.
        unmatched: frames that belonged to no waiting request (late, duplicated, unknown).
    """

    def __init__(self, ws: ClientConnection, url: str, mode: Mode, timeout: float | None) -> None:
        self.url = url
        self.plain = mode == "plain"
        self.timeout = timeout
        self.unmatched = 0
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._core: ClientCore[asyncio.Future[Any] | _Stream] = ClientCore(mode, timeout)
        self._timer: asyncio.TimerHandle | None = None
        self._close_reason: str | None = None
        self._reader = self._loop.create_task(self._read())

    # Public API

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol: ``hopline.v1``, or None in plain mode."""
        return self._ws.subprotocol

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (no request can be sent any more)."""
        return self._close_reason is not None

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once closed (1001: the gateway shut down), else None."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended, in one line; None while it is open."""
        return self._close_reason

    @property
    def waiting(self) -> int:
        """Requests sent and waiting for their reply."""
        return len(self._core)

    async def request(self, data: Any, *, id: ClientId = None) -> Any:
        """Send one request and return its reply (``str``; plain mode: the frame as received).

        ``data`` is a ``str`` (plain mode: ``str`` or ``bytes``). ``id`` is the
        ``hopline.v1`` id; by default the next integer. Cancelling the call abandons
        the request (a reply that comes later is ignored).

        Raises:
            RequestError: an error reply, or none within ``timeout`` (``code`` says which).
            ConnectionLost: the connection ended first.
        """
        return await (await self.submit(data, id=id))

    async def submit(self, data: Any, *, id: ClientId = None) -> asyncio.Future[Any]:
        """Send one request now and return the future of its reply (see :meth:`request`).

        Use it to pipeline: every ``submit`` has left once it returns, in call order.
        Cancelling the future abandons the request.

        Raises:
            ConnectionLost: the connection has ended (nothing was sent).
            KeyError: ``id`` is already waiting for a reply.
        """
        future: asyncio.Future[Any] = self._loop.create_future()
        request_id = await self._send(data, future, id)
        future.add_done_callback(lambda f: f.cancelled() and self._core.abandon(request_id))
        return future

    async def stream(self, data: str, *, id: ClientId = None) -> AsyncIterator[str]:
        """Send one request and yield its reply in chunks, the final reply frame last.

        A reply that is not streamed is one chunk. Leaving the loop early abandons
        the request.

        Raises:
            RequestError: an error frame, or no frame within ``timeout``.
            ConnectionLost: the connection ended first.
        """
        frames = _Stream()
        request_id = await self._send(data, frames, id)
        done = False
        try:
            while not done:
                done, item = await frames.get()
                if isinstance(item, BaseException):
                    done = True
                    raise item
                yield item
        finally:
            if not done:
                self._core.abandon(request_id)

    async def close(self) -> None:
        """Close the connection (waiting requests end with :class:`ConnectionLost`)."""
        with contextlib.suppress(WebSocketException, OSError):
            await self._ws.close()
        await self.wait_closed()

    async def wait_closed(self) -> str:
        """Wait until the connection has ended; return why (see :attr:`close_reason`)."""
        await asyncio.shield(self._reader)
        assert self._close_reason is not None
        return self._close_reason

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Internals

    async def _send(self, data: Any, value: asyncio.Future[Any] | _Stream, id: ClientId) -> Any:
        if self._close_reason is not None:
            raise ConnectionLost(self._close_reason)
        request_id, frame = self._core.send(data, self._loop.time(), value, id)
        try:
            await self._ws.send(frame)
        except ConnectionClosed:
            self._core.abandon(request_id)
            await self.wait_closed()
            raise ConnectionLost(self._close_reason or "connection lost") from None
        except BaseException:  # cancelled, or data websockets cannot send: not waiting
            self._core.abandon(request_id)
            raise
        self._arm()
        return request_id

    async def _read(self) -> None:
        core, loop = self._core, self._loop
        try:
            async for frame in self._ws:
                self._dispatch(core.receive(frame, loop.time()))
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug must not leave requests waiting forever
            log.debug("reader failed: %r", exc)
        finally:
            ws = self._ws
            self._close_reason = describe_close(ws.close_code, ws.close_reason or "")
            if self._timer is not None:
                self._timer.cancel()
            for lost in core.close():
                _fail(lost.value, ConnectionLost(self._close_reason))

    def _dispatch(self, event: Reply[Any] | Chunk[Any] | Failed[Any] | Unmatched) -> None:
        cls = event.__class__
        if cls is Unmatched:
            self.unmatched += 1
            log.debug("ignored a frame: %s", event.reason)  # type: ignore[union-attr]
            return
        value = event.value  # type: ignore[union-attr]
        if cls is Reply:
            data = event.data  # type: ignore[union-attr]
            if value.__class__ is _Stream:
                value.put_nowait((True, data))
            elif not value.done():
                value.set_result(data)
        elif cls is Chunk:
            if value.__class__ is _Stream:  # request() waits for the last frame
                value.put_nowait((False, event.data))  # type: ignore[union-attr]
            self._arm()
        else:
            failure = event.failure  # type: ignore[union-attr]
            _fail(value, RequestError(failure.code, failure.message, event.id))

    def _arm(self) -> None:
        """Make sure the expiry timer fires at the core's next deadline."""
        deadline = self._core.next_deadline()
        timer = self._timer
        if deadline is None or (timer is not None and timer.when() <= deadline):
            return
        if timer is not None:
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        for late in self._core.expire(self._loop.time()):
            _fail(late.value, _timed_out(late, self.timeout))
        self._arm()


def _timed_out(late: Unanswered[Any], timeout: float | None) -> RequestError:
    return RequestError(ErrorCode.TIMEOUT, f"no reply within {timeout:g} s", late.id)


def _fail(value: asyncio.Future[Any] | _Stream, exc: BaseException) -> None:
    if value.__class__ is _Stream:
        value.put_nowait((True, exc))  # type: ignore[union-attr]
    elif not value.done():  # type: ignore[union-attr]
        value.set_exception(exc)  # type: ignore[union-attr]


class connect:  # lower case: used like a function, as websockets' connect is
    """Open a connection to a gateway: ``async with connect(url) as client:`` or ``await``.

    Args:
        url: the gateway's ``ws://`` or ``wss://`` URL, e.g. ``ws://localhost:8000/ws``.
        token: a JWT for a gateway run with ``--token-secret`` (sent as
            ``Authorization: Bearer``).
        plain: plain mode instead of ``hopline.v1`` (replies in order, no streaming).
        timeout: seconds each request waits for its reply; None: no client-side limit
            (the gateway's own request timeout still applies).
        open_timeout: seconds the opening handshake may take.
        max_size: largest reply frame accepted, in bytes; None: no limit (the gateway
            enforces its own).

    Raises (on ``await`` or ``async with``):
        InvalidURL: ``url`` is not a ws:// or wss:// URL (raised at once, before any I/O).
        ConnectError: the connection could not be opened (``.reason``, ``.retryable``).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        plain: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
        open_timeout: float | None = 10.0,
        max_size: int | None = None,
    ) -> None:
        self.url = validate_url(url)
        self.token = token
        self.mode: Mode = "plain" if plain else "hopline.v1"
        self.timeout = timeout
        self.open_timeout = open_timeout
        self.max_size = max_size
        self._client: Client | None = None

    async def _open(self) -> Client:
        try:
            ws = await ws_connect(
                self.url,
                subprotocols=None if self.mode == "plain" else [Subprotocol(SUBPROTOCOL)],
                additional_headers=auth_headers(self.token),
                open_timeout=self.open_timeout,
                max_size=self.max_size,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            failure = classify(exc, self.open_timeout)
            raise ConnectError(self.url, failure.reason, failure.retryable) from exc
        if self.mode != "plain" and ws.subprotocol != SUBPROTOCOL:
            await ws.close()
            failure = SUBPROTOCOL_REFUSED
            raise ConnectError(self.url, failure.reason, failure.retryable)
        return Client(ws, self.url, self.mode, self.timeout)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()
