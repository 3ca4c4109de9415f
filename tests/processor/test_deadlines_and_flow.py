"""Issue 15 on the processor: deadlines reach the handler; prefetch bounded in bytes."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest

from hopline.handler import Context
from tests.conftest import Stack, ws_url
from tests.faults.ledger import Ledger, drive
from tests.helpers import eventually

SLOW = 3.0  # the handler's time for a 'slow' request
DEADLINE = 1.0  # the gateway's request timeout


async def slow_async(payload: str | bytes) -> str | bytes:
    """'slow' takes SLOW seconds (cancelled at its deadline); anything else echoes."""
    if payload == "slow":
        await asyncio.sleep(SLOW)
    return payload


def slow_sync(payload: str | bytes, ctx: Context) -> str | bytes:
    """Like slow_async, blocking (its result is abandoned at the deadline)."""
    if payload == "slow":
        time.sleep(SLOW)
        assert ctx.cancelled.is_set()
    return payload


@pytest.mark.parametrize("batching", ["on", "off"])
@pytest.mark.parametrize("handler", [slow_async, slow_sync], ids=["async", "sync"])
async def test_slow_requests_past_their_deadline_do_not_starve_a_bystander(
    stack: Stack, handler: object, batching: str
) -> None:
    """2 slow requests/s (3 s handler, 1 s deadline, 4 slots): the bystander gets every reply.

    Batched, a bystander request packed with a slow one is answered early (not held
    until the batch's slowest request ends).
    """
    gw = await stack.gateway(request_timeout=DEADLINE, batching=batching)
    proc = await stack.processor(handler, concurrency=4)  # type: ignore[arg-type]
    slow, bystander = Ledger("slow"), Ledger("bystander")
    await asyncio.gather(
        drive(ws_url(gw), slow, "s", count=10, window=10, pace=0.5, payload=lambda _: "slow"),
        drive(ws_url(gw), bystander, "b", count=25, window=1, pace=0.2, settle=10),
    )
    slow.assert_complete()
    bystander.assert_complete()
    assert slow.errors == {"timeout": 10}
    assert bystander.errors == {}, "the bystander starved behind slow requests"
    assert bystander.replies == 25
    # Without cancellation 4 slots stay held for 3 s: 2 slow/s would need 6.
    await eventually(lambda: proc.in_progress == 0, message="slow requests acked")


async def test_a_cancelled_async_handler_sees_cancellation_and_frees_its_slot(
    stack: Stack,
) -> None:
    """At the deadline the handler is cancelled (CancelledError inside it), not left running."""
    cancelled = asyncio.Event()

    async def hold(payload: str | bytes) -> str | bytes:
        if payload == "hold":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return payload

    gw = await stack.gateway(request_timeout=DEADLINE, batching="off")
    proc = await stack.processor(hold, concurrency=1)
    ledger = Ledger("hold then go")
    await drive(ws_url(gw), ledger, "h", count=1, payload=lambda _: "hold", settle=5)
    assert ledger.errors == {"timeout": 1}
    async with asyncio.timeout(5):
        await cancelled.wait()
    after = Ledger("after")
    await drive(ws_url(gw), after, "a", count=3, window=3, settle=5)
    assert after.replies == 3, "the cancelled call's slot was not freed"
    await eventually(lambda: proc.in_progress == 0, message="all acked")


async def test_prefetch_bytes_bounds_what_the_processor_holds(stack: Stack) -> None:
    """With --prefetch-bytes 20000, 4 KB requests stop arriving at ~5 held; all served later."""
    gate = asyncio.Event()

    async def gated(payload: str | bytes) -> str | bytes:
        await gate.wait()
        return payload[:3]

    proc = await stack.processor(gated, prefetch=50, prefetch_bytes=20_000)
    conn = await aio_pika.connect(stack.rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        for i in range(40):
            await channel.default_exchange.publish(
                aio_pika.Message(b"%03d" % i + b"x" * 3997, correlation_id=str(uuid.uuid4()),
                                 reply_to=replies.name),
                routing_key=stack.topology.input_queue,
            )  # fmt: skip
        await eventually(lambda: proc.consumers.paused, message="consumers paused")
        held = proc.in_progress
        print(f"[prefetch bytes] held {held} messages of 4000 bytes under a 20000-byte bound")
        assert 5 <= held <= 10, f"{held} messages held with a 20,000-byte bound"
        gate.set()
        got: list[bytes] = []
        most = 0
        async with asyncio.timeout(20), replies.iterator(no_ack=True) as messages:
            async for message in messages:
                got.append(message.body)
                most = max(most, proc.in_progress)
                if len(got) == 40:
                    break
    assert sorted(got) == [b"%03d" % i for i in range(40)]
    # Resumed consumers get a prefetch count that fits the budget (5 x 4000 bytes).
    assert most <= 10, f"{most} messages held after resuming"
