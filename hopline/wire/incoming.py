"""One delivered message as hopline reads it: aiormq's delivery, aio-pika's names.

The processor reads its requests this way and the gateway its replies: both consume
through aiormq's channel directly with :func:`consume`.

Contract:

* :class:`Incoming` wraps an aiormq ``DeliveredMessage``
  and offers what hopline reads of aio-pika's ``IncomingMessage``, with the
  same values (``tests/wire/test_incoming.py`` compares them on one message):
  ``body``, ``headers`` (a dict, empty when the message has none),
  ``correlation_id``, ``reply_to``, ``content_type``, ``expiration`` (seconds, a
  float), ``delivery_mode``, ``delivery_tag``, ``redelivered``, ``routing_key``,
  and ``ack()``, ``nack(requeue=True)``, ``reject(requeue=False)``, each of which
  waits until its frame is written, as aio-pika's do.
* Each is called at most once per message (aio-pika would raise on a second one;
  RabbitMQ closes the channel).

Why: building aio-pika's ``IncomingMessage`` (some thirty guarded attribute sets)
was about a tenth of the processor's Python time per message, and aio-pika runs the
callback in a second task; most of those attributes are never read. ``ack()`` and
the like are for messages consumed with manual acks (the gateway consumes without).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

__all__ = ["Incoming", "consume"]


async def consume(
    channel: AbstractChannel,
    queue: str,
    on_message: Callable[[Incoming], Awaitable[None]],
    *,
    no_ack: bool = False,
) -> str:
    """Consume ``queue`` on ``channel``'s aiormq channel; returns the consumer tag.

    Each delivery reaches ``on_message`` as an :class:`Incoming`, in the one task
    aiormq runs it in (no aio-pika ``IncomingMessage``, no second task).
    """
    underlay = await channel.get_underlay_channel()
    ok = await underlay.basic_consume(
        queue, lambda message: on_message(Incoming(message)), no_ack=no_ack
    )
    assert ok.consumer_tag is not None
    return ok.consumer_tag


class Incoming:
    """A delivered message (see the module docstring)."""

    __slots__ = ("_channel", "_properties", "body", "delivery_tag", "redelivered", "routing_key")

    def __init__(self, message: DeliveredMessage) -> None:
        delivery = message.delivery
        self._channel = message.channel
        self._properties = message.header.properties
        self.body: bytes = message.body
        self.delivery_tag: int = delivery.delivery_tag  # type: ignore[union-attr]
        self.redelivered: bool = bool(delivery.redelivered)  # type: ignore[union-attr]
        self.routing_key: str | None = delivery.routing_key  # type: ignore[union-attr]

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers table (empty when it has none)."""
        return self._properties.headers or {}

    @property
    def correlation_id(self) -> str | None:
        """The requester's correlation id."""
        return self._properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        """Where the reply goes."""
        return self._properties.reply_to

    @property
    def content_type(self) -> str | None:
        """The body's content type."""
        return self._properties.content_type

    @property
    def expiration(self) -> float | None:
        """The message TTL in seconds, if it has one."""
        value = self._properties.expiration
        return None if value is None else float(value) / 1000

    @property
    def delivery_mode(self) -> int | None:
        """1 transient, 2 persistent."""
        return self._properties.delivery_mode

    async def ack(self) -> None:
        """Acknowledge the message."""
        await self._channel.basic_ack(self.delivery_tag)

    async def nack(self, requeue: bool = True) -> None:
        """Return the message (to the queue when ``requeue``)."""
        await self._channel.basic_nack(self.delivery_tag, requeue=requeue)

    async def reject(self, requeue: bool = False) -> None:
        """Reject the message (dead-lettered when not ``requeue``)."""
        await self._channel.basic_reject(self.delivery_tag, requeue=requeue)
