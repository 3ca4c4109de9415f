"""A processor whose connection goes silent lets go of its deliveries at once and moves on.

The processor is given two addresses of the same broker, the first through a TCP
proxy. The proxy is cut while five requests are held by the handler: within about
two heartbeats the watchdog drops the silent connection, the five deliveries are
abandoned (no reply, no ack: the broker redelivers them), and the processor
reconnects through the second address, where it answers each request exactly once.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from hopline.wire.amqp import QueueTopology
from processor.config import ProcessorSettings
from processor.worker import Processor
from tests.faults.proxy import TCPProxy
from tests.helpers import eventually

HEARTBEAT = 2


async def test_silent_connection_releases_deliveries_and_fails_over(
    rabbitmq_url: str, topology: QueueTopology
) -> None:
    proxy = TCPProxy("127.0.0.1", int(rabbitmq_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    release = asyncio.Event()
    calls: list[str] = []

    async def held(payload: str | bytes) -> str | bytes:
        calls.append(str(payload))
        await release.wait()
        return payload

    urls = (
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat={HEARTBEAT},"
        f"{rabbitmq_url}?heartbeat={HEARTBEAT}"
    )
    settings = ProcessorSettings(rabbitmq_url=urls, rabbitmq_order="listed", topology=topology)
    proc = Processor(settings, held)
    await proc.start()
    client = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await client.channel()
        replies: dict[str, int] = {}
        reply_queue = await channel.declare_queue("", exclusive=True)

        async def on_reply(message: AbstractIncomingMessage) -> None:
            corr = message.correlation_id or ""
            replies[corr] = replies.get(corr, 0) + 1

        await reply_queue.consume(on_reply, no_ack=True)
        ids = [str(uuid.uuid4()) for _ in range(5)]
        for corr in ids:
            await channel.default_exchange.publish(
                aio_pika.Message(corr.encode(), correlation_id=corr, reply_to=reply_queue.name),
                routing_key=topology.input_queue,
            )
        await eventually(lambda: proc.in_progress == 5, message="five requests held")
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        proxy.cut()
        await eventually(lambda: proc.abandoned == 5, timeout=3 * HEARTBEAT, message="abandoned")
        released_after = loop.time() - cut_at
        print(f"[processor link] 5 deliveries released {released_after:.2f} s after the cut")
        assert proc.in_progress == 0
        release.set()  # the handler calls of the lost connection end, unanswered
        await eventually(lambda: proc.connected, timeout=15, message="reconnected")
        await eventually(lambda: len(replies) == 5, timeout=30, message="five replies")
        assert replies == {corr: 1 for corr in ids}
    finally:
        release.set()
        await client.close()
        await proc.stop()
        await proxy.close()
