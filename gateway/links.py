"""The gateway's AMQP connections: publish and consume links, their channels, the reply queue.

Both connections are :class:`~hopline.wire.connect.Link` s over the broker address
list, so they move to another node when theirs is lost. Every new consume
connection declares the input queues and a **fresh** exclusive reply queue (the old
name may stay locked on the broker for seconds after a partition) and consumes it;
the links report ready only after that. When the consume connection is lost, the
owner's ``on_reply_path_lost`` runs at once: nobody will see a reply to what is
pending. :attr:`BrokerLinks.connected` is true only while requests can go out and
replies come back: both links ready, both channels open, no connection found silent
by its :class:`~hopline.wire.liveness.Watchdog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection

from gateway.config import GatewaySettings
from gateway.monitor import QueueMonitor
from hopline.wire.connect import Link
from hopline.wire.incoming import Incoming, consume
from hopline.wire.liveness import Watchdog, heartbeat_of

__all__ = ["BrokerLinks"]


class BrokerLinks:
    """Connections of one gateway process. See the module docstring.

    Args:
        settings: broker addresses, topology, connect timeouts.
        monitor: told when the input queues could be declared again.
        on_reply: called with every message of the reply queue (consumed without
            acks through aiormq directly: no aio-pika message object or second task
            per delivery, see :mod:`hopline.wire.incoming`).
        on_reply_path_lost: called when the consume connection is lost.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        monitor: QueueMonitor,
        on_reply: Callable[[Incoming], None],
        on_reply_path_lost: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.reply_queue_name = f"hopline.reply.{uuid.uuid4()}"
        self.publish_channel: AbstractChannel | None = None
        self.consume_channel: AbstractChannel | None = None
        self._monitor_channel: AbstractChannel | None = None
        self._on_reply = on_reply
        self._on_reply_path_lost = on_reply_path_lost
        self._publish_link: Link | None = None
        self._consume_link: Link | None = None
        self._watchdogs: list[Watchdog] = []

    @property
    def publish_conn(self) -> AbstractConnection | None:
        """The publish connection right now (None while reconnecting)."""
        return self._publish_link.connection if self._publish_link is not None else None

    @property
    def consume_conn(self) -> AbstractConnection | None:
        """The consume connection right now (None while reconnecting)."""
        return self._consume_link.connection if self._consume_link is not None else None

    @property
    def broker_address(self) -> str | None:
        """The node the reply path is connected to right now (redacted URL), if any."""
        return self._consume_link.url if self._consume_link is not None else None

    async def start(self, connect_timeout: float, spawn: Callable[[Any], None]) -> None:
        """Open both links (declaring the queues); ``spawn`` runs the watchdogs.

        Raises:
            BrokerUnavailable: no address accepted a connection in time.
        """
        settings = self.settings
        url = settings.rabbitmq_url
        attempt_timeout = min(settings.connect_attempt_timeout, connect_timeout)
        self._publish_link = Link(
            url,
            "hopline-gateway-publish",
            self._setup_publish,
            self._publish_lost,
            attempt_timeout=attempt_timeout,
            order=settings.rabbitmq_order,
        )
        self._consume_link = Link(
            url,
            "hopline-gateway-consume",
            self._setup_consume,
            self._consume_lost,
            attempt_timeout=attempt_timeout,
            order=settings.rabbitmq_order,
        )
        try:
            await asyncio.gather(
                self._publish_link.start(connect_timeout),
                self._consume_link.start(connect_timeout),
            )
        except BaseException:
            await self.close()
            raise
        heartbeat = heartbeat_of(url)
        if heartbeat > 0:  # notice a silent (partitioned) connection within ~2 heartbeats
            self._watchdogs = [
                Watchdog(self._publish_link, heartbeat, "publish"),
                Watchdog(self._consume_link, heartbeat, "consume"),
            ]
            for watchdog in self._watchdogs:
                spawn(watchdog.run())

    async def _setup_publish(self, conn: AbstractConnection) -> None:
        """On every publish connection: one channel with publisher confirms."""
        self.publish_channel = await conn.channel(publisher_confirms=True, on_return_raises=True)

    async def _setup_consume(self, conn: AbstractConnection) -> None:
        """On every consume connection: the input queues, and a fresh reply queue consumed."""
        monitor_channel = await conn.channel()
        await self.settings.topology.declare(monitor_channel)
        consume_channel = await conn.channel()
        name = f"hopline.reply.{uuid.uuid4()}"
        await consume_channel.declare_queue(name, exclusive=True, auto_delete=True)
        await consume(consume_channel, name, self._on_delivery, no_ack=True)
        self._monitor_channel = monitor_channel
        self.consume_channel = consume_channel
        self.reply_queue_name = name
        self.monitor.reachable()

    async def _on_delivery(self, message: Incoming) -> None:
        self._on_reply(message)

    def _consume_lost(self, exc: BaseException | None) -> None:
        self.consume_channel = None
        self._on_reply_path_lost()

    def _publish_lost(self, exc: BaseException | None) -> None:
        """Unconfirmed publishes fail through their own exception; nothing else to do."""
        self.publish_channel = None

    @property
    def connected(self) -> bool:
        """Whether requests can go out and replies come back right now."""
        # On every submit: plain checks, no generators (about 1 us less per request).
        publish, consume = self._publish_link, self._consume_link
        if publish is None or consume is None:
            return False
        if not (publish.ready.is_set() and consume.ready.is_set()):
            return False
        channel, replies = self.publish_channel, self.consume_channel
        if channel is None or replies is None or channel.is_closed or replies.is_closed:
            return False
        watchdogs = self._watchdogs  # none, or the publish and the consume connection's
        return not watchdogs or not (watchdogs[0].silent or watchdogs[1].silent)

    async def monitor_channel(self) -> AbstractChannel | None:
        """A channel for queue samples: the last one, or a new one if it was closed.

        A failed sample (the queue is unreachable: a classic queue whose node is down)
        closes its channel; the next call opens another on the consume connection.
        """
        channel = self._monitor_channel
        if channel is None or channel.is_closed:
            conn = self.consume_conn
            if conn is None or conn.is_closed:
                return None
            channel = self._monitor_channel = await conn.channel()
        return channel

    async def close(self) -> None:
        """Close both links (idempotent)."""
        for link in (self._publish_link, self._consume_link):
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.close()
