"""The private aiormq attributes hopline reads still exist (fails loudly after an upgrade)."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq

from hopline.wire._aiormq_compat import (
    PUBLISH_LOCK_ATTRIBUTE,
    UNBLOCKED_ATTRIBUTE,
    publish_lock_held,
    unblocked_event,
)
from hopline.wire.liveness import is_blocked


async def test_aiormq_still_records_connection_blocked(rabbitmq_url: str) -> None:
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        assert conn.transport is not None
        underlying = conn.transport.connection
        assert isinstance(getattr(underlying, UNBLOCKED_ATTRIBUTE, None), asyncio.Event), (
            f"aiormq {aio_pika.__version__} no longer has {UNBLOCKED_ATTRIBUTE}: update "
            "hopline/wire/_aiormq_compat.py (blocked publishers would go unnoticed)"
        )
        event = unblocked_event(underlying)
        assert event is not None and event.is_set()
        assert not is_blocked(conn)
    finally:
        await conn.close()


async def test_aiormq_still_has_the_channel_publish_lock(rabbitmq_url: str) -> None:
    conn = await aiormq.connect(rabbitmq_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        assert isinstance(getattr(channel, PUBLISH_LOCK_ATTRIBUTE, None), asyncio.Lock), (
            f"aiormq no longer has {PUBLISH_LOCK_ATTRIBUTE}: update "
            "hopline/wire/_aiormq_compat.py (every publish now takes aiormq's slower path)"
        )
        assert not publish_lock_held(channel)
    finally:
        await conn.close()
