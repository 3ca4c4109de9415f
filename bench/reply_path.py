"""The gateway's two reply-path options, measured: a fresh exclusive reply queue per
connection vs RabbitMQ's Direct Reply-to (``amq.rabbitmq.reply-to``).

For each option and ``--rounds`` times: open a connection, set up the reply path
(declare + consume, or consume the pseudo-queue), then send ``--requests`` requests
(``--in-flight`` at a time) through an echo consumer on a scratch queue and wait
for every reply. Prints, per option, the median set-up time and the median round-trip
throughput, as JSON lines.

Run: ``python bench/reply_path.py --rabbitmq-url amqp://guest:guest@127.0.0.1:5672/``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from statistics import median

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

DIRECT = "amq.rabbitmq.reply-to"


async def echo(url: str, queue: str, ready: asyncio.Event, stop: asyncio.Event) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=256)
        q = await channel.declare_queue(queue, auto_delete=True)

        async def on(message: AbstractIncomingMessage) -> None:
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, correlation_id=message.correlation_id),
                routing_key=message.reply_to or "",
            )
            await message.ack()

        await q.consume(on)
        ready.set()
        await stop.wait()


async def one_round(url: str, queue: str, direct: bool, requests: int, in_flight: int) -> dict:
    conn = await aio_pika.connect(url)
    async with conn:
        started = time.perf_counter()
        channel = await conn.channel()
        waiting: dict[str, asyncio.Future[None]] = {}

        def on_reply(message: AbstractIncomingMessage) -> None:
            future = waiting.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(None)

        async def consume(message: AbstractIncomingMessage) -> None:
            on_reply(message)

        if direct:
            reply_to = DIRECT
            queue_obj = await channel.get_queue(DIRECT, ensure=False)
            await queue_obj.consume(consume, no_ack=True)
            publish_channel = channel  # Direct Reply-to: publish on the consuming channel
        else:
            reply_to = f"bench.reply.{uuid.uuid4()}"
            q = await channel.declare_queue(reply_to, exclusive=True, auto_delete=True)
            await q.consume(consume, no_ack=True)
            publish_channel = await conn.channel()
        setup = time.perf_counter() - started
        slots = asyncio.Semaphore(in_flight)
        loop = asyncio.get_running_loop()

        async def request(i: int) -> None:
            async with slots:
                corr = f"{i}"
                future = loop.create_future()
                waiting[corr] = future
                await publish_channel.default_exchange.publish(
                    aio_pika.Message(b"x", correlation_id=corr, reply_to=reply_to),
                    routing_key=queue,
                )
                await future

        t0 = time.perf_counter()
        await asyncio.gather(*(request(i) for i in range(requests)))
        elapsed = time.perf_counter() - t0
    return {"setup_ms": setup * 1000, "rps": requests / elapsed}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    queue = f"bench.reply_path.{uuid.uuid4().hex[:8]}"
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.ensure_future(echo(args.rabbitmq_url, queue, ready, stop))
    await ready.wait()
    try:
        for direct in (False, True):
            rounds = [
                await one_round(args.rabbitmq_url, queue, direct, args.requests, args.in_flight)
                for _ in range(args.rounds)
            ]
            print(
                json.dumps(
                    {
                        "reply_path": "direct-reply-to" if direct else "fresh-exclusive-queue",
                        "rounds": args.rounds,
                        "setup_ms_median": round(median([r["setup_ms"] for r in rounds]), 2),
                        "rps_median": round(median([r["rps"] for r in rounds])),
                    }
                )
            )
    finally:
        stop.set()
        await server


if __name__ == "__main__":
    asyncio.run(main())
