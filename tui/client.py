"""The TUI's I/O: a ``hopline.v1`` connection (the public client) and a ``/stats`` poller.

Both run as Textual workers on the app's event loop and report only by posting
messages (:mod:`tui.messages`); neither touches a widget. Neither ever raises
because the gateway or broker went away: the connection loop reconnects with
backoff and the poller keeps polling. The protocol, the handshake and the wording
of failures are the public client's (:mod:`hopline.client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from textual.message import Message

from hopline.client.aio import Client, connect
from hopline.client.errors import ConnectError, ConnectionLost, InvalidURL, RequestError
from tui.backoff import Backoff
from tui.config import TuiSettings
from tui.http import HttpError, get_json
from tui.messages import (
    ChunkReceived,
    ConnectionChanged,
    RepliesReceived,
    Reply,
    StatsFailed,
    StatsUpdated,
)
from tui.stats import StatsFormatError, parse_stats

__all__ = ["GatewayClient"]

log = logging.getLogger(__name__)

Post = Callable[[Message], Any]


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
        self._client: Client | None = None
        self._outbox: asyncio.Queue[tuple[int, str, bool]] | None = None
        self._streams: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._replies: list[Reply] = []

    @property
    def connected(self) -> bool:
        """Whether requests can be sent right now."""
        return self._client is not None

    def send(self, request_id: int, data: str, stream: bool = False) -> int | None:
        """Queue one request for sending.

        With ``stream``, every frame of its reply is posted as a :class:`ChunkReceived`
        as it arrives (a streamed reply grows on screen), then the whole reply (the
        chunks joined) as a :class:`Reply`.

        Returns:
            The generation of the connection it goes out on, or None (nothing
            queued) when not connected.
        """
        if self._client is None or self._outbox is None:
            return None
        self._outbox.put_nowait((request_id, data, stream))
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
                client = await self._connect()
            except ConnectError as exc:
                reason, fatal = exc.reason, not exc.retryable
            else:
                backoff.reset()
                self.generation += 1
                self.post(
                    ConnectionChanged("connected", self.generation, subprotocol=client.subprotocol)
                )
                reason = await self._serve(client)
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

    async def _connect(self) -> Client:
        settings = self.settings
        try:
            return await connect(
                settings.url,
                token=settings.token,
                timeout=None,  # the gateway times requests out; its error frame says so
                open_timeout=settings.connect_timeout,
            )
        except InvalidURL as exc:
            raise ConnectError(settings.url, str(exc), retryable=False) from None
        except ConnectError:
            raise
        except Exception as exc:  # never let an unexpected failure end the connection loop
            log.debug("connect failed: %r", exc)
            raise ConnectError(settings.url, f"cannot connect: {exc}", retryable=True) from None

    async def _serve(self, client: Client) -> str:
        """Send queued requests until the connection ends; returns why it ended."""
        self._outbox = asyncio.Queue()
        self._client = client
        writer = asyncio.get_running_loop().create_task(self._write(client, self._outbox))
        try:
            return await client.wait_closed()
        finally:
            self._client = None
            self._outbox = None
            writer.cancel()
            for task in list(self._streams):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await client.close()

    async def _write(self, client: Client, outbox: asyncio.Queue[tuple[int, str, bool]]) -> None:
        while True:
            request_id, data, stream = await outbox.get()
            if stream:
                task = asyncio.get_running_loop().create_task(
                    self._stream(client, request_id, data)
                )
                self._streams.add(task)
                task.add_done_callback(self._streams.discard)
                continue
            try:
                future = await client.submit(data, id=request_id)
            except ConnectionLost:
                return  # _serve sees why
            except Exception as exc:  # never let one request stop the others
                log.debug("send failed: %r", exc)
                continue
            future.add_done_callback(partial(self._on_done, request_id))

    async def _stream(self, client: Client, request_id: int, data: str) -> None:
        """Post each frame of the reply as it arrives, then the joined reply (or the error)."""
        parts: list[str] = []
        try:
            async for chunk in client.stream(data, id=request_id):
                text = str(chunk)
                parts.append(text)
                self.post(ChunkReceived(request_id, text, self.clock()))
        except RequestError as exc:
            reply = Reply(
                request_id, self.clock(), error_code=exc.code.value, error_message=exc.message
            )
        except Exception as exc:  # connection lost: the app fails the generation's requests
            log.debug("stream ended: %r", exc)
            return
        else:
            reply = Reply(request_id, self.clock(), data="".join(parts))
        if not self._replies:
            asyncio.get_running_loop().call_soon(self._post_replies)
        self._replies.append(reply)

    def _on_done(self, request_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        received_at = self.clock()
        exc = future.exception()
        if isinstance(exc, RequestError):
            reply = Reply(
                request_id, received_at, error_code=exc.code.value, error_message=exc.message
            )
        elif exc is not None:  # connection lost: the app fails the generation's requests
            return
        else:
            reply = Reply(request_id, received_at, data=str(future.result()))
        if not self._replies:
            # Replies completed in one go are posted together.
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
