"""The private aiormq attribute hopline reads still exists (fails loudly after an upgrade)."""

from __future__ import annotations

import asyncio

import aio_pika

from hopline.wire._aiormq_compat import UNBLOCKED_ATTRIBUTE, unblocked_event
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
