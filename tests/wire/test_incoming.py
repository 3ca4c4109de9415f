"""hopline.wire.incoming.Incoming reads a delivery as aio-pika's IncomingMessage does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from hopline.wire.incoming import Incoming


@pytest.fixture
async def queue(rabbitmq_url: str) -> AsyncIterator[tuple[aio_pika.abc.AbstractChannel, str]]:
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        name = f"test.incoming.{uuid.uuid4().hex[:8]}"
        await channel.declare_queue(name, auto_delete=True)
        yield channel, name
    finally:
        await conn.close()


async def get_raw(channel: aio_pika.abc.AbstractChannel, name: str) -> Incoming:
    underlay = await channel.get_underlay_channel()
    return Incoming(await underlay.basic_get(name, no_ack=False))


async def test_the_same_values_as_aio_pika(
    queue: tuple[aio_pika.abc.AbstractChannel, str],
) -> None:
    channel, name = queue
    sent = aio_pika.Message(
        b"hello",
        headers={"x-hopline-deadline-ms": 1_900_000_000_000, "x-hopline-stream": 1},
        correlation_id=str(uuid.uuid4()),
        reply_to="hopline.reply.x",
        content_type="text/plain; charset=utf-8",
        expiration=30,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await channel.default_exchange.publish(sent, routing_key=name)

    ours = await get_raw(channel, name)
    assert not ours.redelivered
    await ours.nack(requeue=True)  # back to the queue, redelivered
    theirs = await (await channel.get_queue(name)).get(fail=True)
    assert theirs is not None
    await theirs.nack(requeue=True)
    again = await get_raw(channel, name)

    for attribute in (
        "body",
        "headers",
        "correlation_id",
        "reply_to",
        "content_type",
        "expiration",
        "routing_key",
        "redelivered",
    ):
        assert getattr(again, attribute) == getattr(theirs, attribute), attribute
    assert again.delivery_mode == int(theirs.delivery_mode) == 2
    assert again.redelivered and again.expiration == 30.0
    await again.ack()
    assert await (await channel.get_queue(name)).get(fail=False) is None


async def test_no_headers_read_as_empty_and_reject_drops(
    queue: tuple[aio_pika.abc.AbstractChannel, str],
) -> None:
    channel, name = queue
    await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
    message = await get_raw(channel, name)
    assert message.headers == {} and message.correlation_id is None
    assert message.expiration is None
    await message.reject(requeue=False)
    assert await (await channel.get_queue(name)).get(fail=False) is None
