"""``--max-queue-length`` counts requests, not batch messages, on the real broker.

The broker's ``x-max-length`` counts AMQP messages; a gateway given a length cap
sends every request as its own message (no batches), so a cap of 10 holds 10
requests, not 10 batches of up to ``--max-batch`` requests each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from websockets.asyncio.client import connect

from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, ws_url
from tests.helpers import eventually

CAP = 10
SENT = 30
TIMEOUT = 15.0  # the queued requests wait for the processor started later


async def ready_count(url: str, queue: str) -> int:
    """Ready messages in ``queue`` now (a passive declare on a fresh connection)."""
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


@pytest.fixture
async def stalled_batch_consumer(rabbitmq_url: str, topology: QueueTopology) -> AsyncIterator[None]:
    """A consumer on the batch queue that takes one message and never acks it.

    It is what a stalled hopline processor looks like to the gateway: with
    ``--batching auto`` and no length cap the gateway would batch for it.
    """
    capped = dataclasses.replace(topology, max_length=CAP)
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=1)
        _, batch = await capped.declare(channel)
        await batch.consume(_keep, no_ack=False)
        yield


async def _keep(message: AbstractIncomingMessage) -> None:
    """Take a delivery and never ack it."""


async def test_queue_length_cap_counts_requests_not_batches(
    stack: Stack, rabbitmq_url: str, stalled_batch_consumer: None
) -> None:
    """Cap 10, a stalled consumer, 30 requests: 10 queued, 20 busy at once; then all answered."""
    stack.topology = dataclasses.replace(stack.topology, max_length=CAP)
    gw = await stack.gateway(request_timeout=TIMEOUT, window=SENT)
    await gw.broker.sample_queues()
    assert gw.broker.queues[stack.topology.batch_queue].consumers == 1
    assert gw.broker.batching_active is False  # auto mode would batch for that consumer
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(SENT):
            await ws.send(json.dumps({"id": i, "data": f"r{i}"}))
        busy: set[int] = set()
        while len(busy) < SENT - CAP:
            async with asyncio.timeout(5):
                answer = json.loads(await ws.recv())
            assert answer["error"]["code"] == "busy", answer
            busy.add(answer["id"])
        busy_after = loop.time() - t0
        assert await ready_count(rabbitmq_url, stack.topology.input_queue) == CAP
        assert await ready_count(rabbitmq_url, stack.topology.batch_queue) == 0

        await stack.processor("echo")
        replies = {}
        while len(replies) < CAP:
            async with asyncio.timeout(TIMEOUT):
                answer = json.loads(await ws.recv())
            replies[answer["id"]] = answer.get("data", answer)
    print(f"[queue cap] {SENT - CAP} busy answers within {busy_after:.3f} s")
    assert busy_after < TIMEOUT, "busy waited for the deadline"
    assert replies == {i: f"r{i}" for i in range(SENT) if i not in busy}
    await eventually(lambda: gw.broker.pending_requests == 0, message="nothing pending")
