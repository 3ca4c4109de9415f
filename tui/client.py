"""The TUI's I/O: a ``hopline.v1`` WebSocket client and a ``/stats`` poller.

Both run as Textual workers on the app's event loop and report only by posting
messages (:mod:`tui.messages`); neither touches a widget. Neither ever raises
because the gateway or broker went away: the connection loop reconnects with
backoff and the poller keeps polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from textual.message import Message
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from hopline.wire.envelope import SUBPROTOCOL
from tui.backoff import Backoff
from tui.config import TuiSettings
from tui.http import HttpError, get_json
from tui.messages import ConnectionChanged, RepliesReceived, Reply, StatsFailed, StatsUpdated
from tui.stats import StatsFormatError, parse_stats

__all__ = ["GatewayClient"]

log = logging.getLogger(__name__)

Post = Callable[[Message], Any]

# Handshake statuses that retrying cannot fix: the state becomes "failed".
FATAL_STATUSES = {400, 401, 403, 404}


class _Fatal(Exception):
    """A connection failure that retrying will not fix."""


class GatewayClient:
    """One ``hopline.v1`` connection to a gateway, kept up for as long as :meth:`run` runs.

    Args:
        settings: URL, token, timeouts and backoff limits.
        post: where messages go (``App.post_message``).
        clock: monotonic clock, also used for ``received_at`` stamps.
    """

    def __init__(
        self,
        settings: TuiSettings,
        post: Post,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.post = post
        self.clock = clock
        self.generation = 0
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] | None = None
        self._wake = asyncio.Event()
        self._replies: list[Reply] = []

    @property
    def connected(self) -> bool:
        """Whether requests can be sent right now."""
        return self._ws is not None

    def send(self, request_id: int, data: str) -> int | None:
        """Queue one request for sending.

        Returns:
            The generation of the connection it goes out on, or None (nothing
            queued) when not connected.
        """
        if self._ws is None or self._outbox is None:
            return None
        self._outbox.put_nowait(json.dumps({"id": request_id, "data": data}))
        return self.generation

    def reconnect_now(self) -> None:
        """Skip the current backoff wait (or retry after ``failed``)."""
        self._wake.set()

    # Connection loop

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; returns only when cancelled."""
        settings = self.settings
        backoff = Backoff(maximum=settings.max_backoff)
        self.post(ConnectionChanged("connecting", self.generation))
        while True:
            fatal = False
            try:
                ws = await self._connect()
            except _Fatal as exc:
                reason, fatal = str(exc), True
            except _Retry as exc:
                reason = str(exc)
            else:
                backoff.reset()
                self.generation += 1
                self.post(
                    ConnectionChanged("connected", self.generation, subprotocol=ws.subprotocol)
                )
                reason = await self._serve(ws)
            self._wake.clear()
            retries = settings.max_retries
            if fatal or (retries is not None and backoff.attempt >= retries):
                self.post(ConnectionChanged("failed", self.generation, reason, backoff.attempt))
                await self._wake.wait()
                self._wake.clear()
                backoff.reset()
                self.post(ConnectionChanged("connecting", self.generation))
                continue
            delay = backoff.next_delay()
            self.post(
                ConnectionChanged(
                    "reconnecting",
                    self.generation,
                    reason,
                    backoff.attempt,
                    retry_at=self.clock() + delay,
                )
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            self.post(ConnectionChanged("reconnecting", self.generation, reason, backoff.attempt))

    async def _connect(self) -> ClientConnection:
        settings = self.settings
        try:
            async with asyncio.timeout(settings.connect_timeout):
                ws = await connect(
                    settings.url,
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    additional_headers=settings.auth_headers,
                    open_timeout=None,
                    max_size=None,
                )
        except TimeoutError:
            raise _Retry(f"no answer within {settings.connect_timeout:g} s") from None
        except InvalidURI as exc:
            raise _Fatal(f"invalid URL: {exc}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            text = f"gateway refused the connection: HTTP {status}"
            if status in (401, 403):
                text += " (check --token)"
            if status in FATAL_STATUSES:
                raise _Fatal(text) from None
            raise _Retry(text) from None
        except ConnectionRefusedError:
            raise _Retry("cannot connect: connection refused") from None
        except OSError as exc:
            raise _Retry(f"cannot connect: {exc.strerror or exc}") from None
        except (InvalidHandshake, WebSocketException) as exc:
            raise _Retry(f"handshake failed: {exc}") from None
        except Exception as exc:  # never let an unexpected failure end the connection loop
            log.debug("connect failed: %r", exc)
            raise _Retry(f"cannot connect: {exc}") from None
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close()
            raise _Fatal(f"the server at {settings.url} does not speak {SUBPROTOCOL}")
        return ws

    async def _serve(self, ws: ClientConnection) -> str:
        """Read replies until the connection ends; returns why it ended."""
        self._outbox = asyncio.Queue()
        self._ws = ws
        writer = asyncio.get_running_loop().create_task(self._write(ws, self._outbox))
        try:
            async for frame in ws:
                self._on_frame(frame, self.clock())
        except ConnectionClosed:
            pass
        except Exception as exc:  # never let a bad frame or bug kill the loop
            log.debug("connection failed: %r", exc)
            return f"connection failed: {exc}"
        finally:
            self._ws = None
            self._outbox = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await ws.close()
        return _close_reason(ws)

    @staticmethod
    async def _write(ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(await outbox.get())

    def _on_frame(self, frame: str | bytes, received_at: float) -> None:
        try:
            envelope = json.loads(frame)
        except ValueError:
            log.debug("ignored a frame that is not JSON")
            return
        if not isinstance(envelope, dict):
            return
        error = envelope.get("error")
        if isinstance(error, dict):
            reply = Reply(
                envelope.get("id"),
                received_at,
                error_code=str(error.get("code", "error")),
                error_message=str(error.get("message", "")),
            )
        else:
            reply = Reply(envelope.get("id"), received_at, data=str(envelope.get("data") or ""))
        if not self._replies:
            # Frames already buffered are read without yielding: post them together.
            asyncio.get_running_loop().call_soon(self._post_replies)
        self._replies.append(reply)

    def _post_replies(self) -> None:
        replies, self._replies = self._replies, []
        if replies:
            self.post(RepliesReceived(replies))

    # Stats

    async def poll_stats(self) -> None:
        """GET ``/stats`` every ``stats_interval`` seconds; returns only when cancelled."""
        settings = self.settings
        url = settings.stats_url
        while True:
            started = self.clock()
            try:
                async with asyncio.timeout(settings.connect_timeout):
                    doc = await get_json(url, settings.auth_headers)
                self.post(StatsUpdated(parse_stats(doc), self.clock()))
            except TimeoutError:
                reason = f"no answer within {settings.connect_timeout:g} s"
                self.post(StatsFailed(reason, self.clock()))
            except (HttpError, StatsFormatError) as exc:
                self.post(StatsFailed(str(exc), self.clock()))
            except Exception as exc:  # never let the poller die
                log.debug("stats poll failed: %r", exc)
                self.post(StatsFailed(f"poll failed: {exc}", self.clock()))
            elapsed = self.clock() - started
            await asyncio.sleep(max(0.05, settings.stats_interval - elapsed))


class _Retry(Exception):
    """A connection failure worth retrying."""


def _close_reason(ws: ClientConnection) -> str:
    code, reason = ws.close_code, ws.close_reason
    if code is None or code == 1006:
        return "connection lost"
    if code == 1001:
        return "gateway went away (1001)" + (f": {reason}" if reason else "")
    return f"connection closed ({code}{': ' + reason if reason else ''})"
