"""hopline.wire.publish: aiormq's frames, aiormq's outcomes, against a real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiormq
import pytest
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError, PublishError
from hypothesis import given
from hypothesis import strategies as st
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from hopline.wire._aiormq_compat import publish_lock_held
from hopline.wire.publish import marshal_publish, publish

short = st.text(max_size=40)
header_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=20), st.booleans()
)
properties = st.builds(
    Basic.Properties,
    content_type=st.one_of(st.none(), st.just(""), short),
    content_encoding=st.one_of(st.none(), short),
    headers=st.one_of(st.none(), st.dictionaries(short, header_values, max_size=4)),
    delivery_mode=st.one_of(st.none(), st.sampled_from([1, 2])),
    correlation_id=st.one_of(st.none(), short),
    reply_to=st.one_of(st.none(), short),
    expiration=st.one_of(st.none(), st.integers(0, 10**9).map(str)),
    message_id=st.one_of(st.none(), short),
)


def aiormq_frames(
    channel: int, body: bytes, exchange: str, key: str, props: Basic.Properties, mandatory: bool
) -> bytes:
    """What aiormq's Channel.basic_publish queues for the writer (its own code path)."""
    size = 4096 - 8
    parts = [body[i : i + size] for i in range(0, len(body), size)] if body else []
    frames = [
        Basic.Publish(exchange=exchange, routing_key=key, mandatory=mandatory),
        ContentHeader(properties=props, body_size=len(body)),
        *(ContentBody(part) for part in parts),
    ]
    return ChannelFrame.marshall(channel_number=channel, frames=frames).payload


@given(
    channel=st.integers(1, 2047),
    body=st.binary(max_size=10_000),
    exchange=st.from_regex(r"[a-zA-Z0-9_.:-]{0,40}", fullmatch=True),
    key=short,
    props=properties,
    mandatory=st.booleans(),
)
def test_the_frames_are_aiormqs(
    channel: int, body: bytes, exchange: str, key: str, props: Basic.Properties, mandatory: bool
) -> None:
    ours = marshal_publish(
        channel,
        body,
        exchange=exchange,
        routing_key=key,
        properties=props,
        mandatory=mandatory,
        max_content_size=4096 - 8,
    )
    assert ours == aiormq_frames(channel, body, exchange, key, props, mandatory)


def test_properties_it_does_not_marshal_leave_the_publish_to_aiormq() -> None:
    props = Basic.Properties(message_id="m", priority=5)
    assert (
        marshal_publish(
            1,
            b"x",
            exchange="",
            routing_key="q",
            properties=props,
            mandatory=False,
            max_content_size=100,
        )
        is None
    )


@pytest.fixture
async def channel(rabbitmq_url: str) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    conn = await aiormq.connect(rabbitmq_url)
    try:
        yield await conn.channel(publisher_confirms=True, on_return_raises=True)
    finally:
        await conn.close()


async def declare(channel: aiormq.abc.AbstractChannel, **arguments: object) -> str:
    name = f"test.publish.{uuid.uuid4().hex[:8]}"
    await channel.queue_declare(name, auto_delete=True, arguments=arguments or None)
    return name


def props(i: int, **extra: object) -> Basic.Properties:
    return Basic.Properties(message_id=f"m{i}", correlation_id=f"c{i}", **extra)


async def test_mixed_with_aiormq_publishes_every_message_is_confirmed_in_order(
    channel: aiormq.abc.AbstractChannel,
) -> None:
    queue = await declare(channel)
    assert not publish_lock_held(channel)

    async def one(i: int) -> object:
        if i % 3 == 0:  # aiormq's own path, sometimes waiting for the socket write
            return await channel.basic_publish(
                b"%d" % i, routing_key=queue, properties=props(i), wait=i % 2 == 0
            )
        return await publish(channel, b"%d" % i, routing_key=queue, properties=props(i))

    confirms = await asyncio.gather(*(one(i) for i in range(600)))
    assert all(isinstance(c, Basic.Ack) for c in confirms)
    assert not channel.confirmations
    got = []
    for _ in range(600):
        message = await channel.basic_get(queue, no_ack=True)
        got.append(
            (message.body, message.header.properties.correlation_id, message.delivery_tag > 0)
        )
    # Publishes of one channel reach the queue in the order they were called.
    assert got == [(b"%d" % i, f"c{i}", True) for i in range(600)]


async def test_a_message_arrives_with_its_properties(channel: aiormq.abc.AbstractChannel) -> None:
    queue = await declare(channel)
    sent = Basic.Properties(
        content_type="text/plain; charset=utf-8",
        correlation_id=str(uuid.uuid4()),
        message_id="id-1",
        reply_to="somewhere",
        expiration="30000",
        delivery_mode=2,
        headers={"x-hopline-deadline-ms": 1_900_000_000_000, "x-hopline-stream": 1},
    )
    body = bytes(range(256)) * 1000  # several body frames
    outcome = publish(channel, body, routing_key=queue, properties=sent)
    assert asyncio.isfuture(outcome), "the fast path was not taken"
    await outcome
    message = await channel.basic_get(queue, no_ack=True)
    got = message.header.properties
    assert message.body == body
    assert (got.content_type, got.correlation_id, got.reply_to, got.expiration) == (
        sent.content_type,
        sent.correlation_id,
        sent.reply_to,
        sent.expiration,
    )
    assert (got.delivery_mode, got.headers) == (2, sent.headers)


async def test_an_unroutable_mandatory_message_raises_publish_error(
    channel: aiormq.abc.AbstractChannel,
) -> None:
    with pytest.raises(PublishError):
        await publish(
            channel, b"x", routing_key="test.publish.nobody", properties=props(1), mandatory=True
        )
    queue = await declare(channel)  # the channel keeps working
    assert isinstance(
        await publish(channel, b"y", routing_key=queue, properties=props(2)), Basic.Ack
    )


async def test_a_refused_message_raises_delivery_error(
    channel: aiormq.abc.AbstractChannel,
) -> None:
    queue = await declare(channel, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    await publish(channel, b"1", routing_key=queue, properties=props(1))
    with pytest.raises(DeliveryError):
        await publish(channel, b"2", routing_key=queue, properties=props(2))


async def test_a_closed_channel_raises_instead_of_publishing(
    channel: aiormq.abc.AbstractChannel,
) -> None:
    queue = await declare(channel)
    await channel.close()
    with pytest.raises(ChannelInvalidStateError):
        await publish(channel, b"x", routing_key=queue, properties=props(1))


async def test_a_connection_closed_before_the_confirm_raises_not_cancels(
    rabbitmq_url: str,
) -> None:
    conn = await aiormq.connect(rabbitmq_url)
    channel = await conn.channel(publisher_confirms=True)
    queue = await declare(channel)
    # Fewer than aiormq's writer queue holds: every one takes the fast path.
    pending = [
        asyncio.ensure_future(publish(channel, b"x", routing_key=queue, properties=props(i)))
        for i in range(8)
    ]
    await conn.close()
    done, waiting = await asyncio.wait(pending, timeout=10)
    assert not waiting, "a publish neither confirmed nor failed after its connection closed"
    for future in done:
        assert not future.cancelled()
        assert future.exception() is not None or isinstance(future.result(), Basic.Ack)
