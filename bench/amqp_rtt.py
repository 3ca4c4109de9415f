"""Bare aio-pika request/reply round trips: the AMQP ceiling of the benchmark.

No WebSocket at all. ``server`` consumes a durable queue (prefetch = in-flight),
replies persistent to ``reply_to`` with the correlation id on a channel with
publisher confirms, then acks. ``client`` keeps ``--in-flight`` requests
outstanding, each published persistent with confirms, replies consumed from an
exclusive queue; it prints the same JSON lines as ``driver.py``.

Run: ``python bench/amqp_rtt.py server --queue Q`` and
``python bench/amqp_rtt.py client --queue Q --in-flight 100 --duration 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid

import aio_pika
import aioloop
from aio_pika.abc import AbstractIncomingMessage
from driver import Tally, clock, emit, summary

PERSISTENT = aio_pika.DeliveryMode.PERSISTENT


async def serve(url: str, queue_name: str, prefetch: int) -> None:
    """Answer requests (append " world") until SIGTERM/SIGINT."""
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()  # publisher confirms on (the default)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(queue_name, durable=True)

    async def on_message(message: AbstractIncomingMessage) -> None:
        reply = aio_pika.Message(
            message.body + b" world",
            correlation_id=message.correlation_id,
            delivery_mode=PERSISTENT,
        )
        await channel.default_exchange.publish(reply, routing_key=message.reply_to or "")
        await message.ack()

    await queue.consume(on_message)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"amqp server consuming {queue_name}", flush=True)
    await stop.wait()
    await connection.close()


async def drive(args: argparse.Namespace) -> dict:
    """Keep ``in_flight`` round trips outstanding; measure the window."""
    connection = await aio_pika.connect_robust(args.rabbitmq_url)
    channel = await connection.channel()
    await channel.declare_queue(args.queue, durable=True)
    replies = await channel.declare_queue(exclusive=True, auto_delete=True)
    loop = asyncio.get_running_loop()
    futures: dict[str, asyncio.Future[bytes]] = {}

    async def on_reply(message: AbstractIncomingMessage) -> None:
        future = futures.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    await replies.consume(on_reply, no_ack=True)
    tally = Tally()
    window = [float("inf"), float("inf")]
    running = True

    async def worker(index: int) -> None:
        seq = 0
        while running:
            seq += 1
            text = f"{index}:{seq}"
            corr = str(uuid.uuid4())
            future: asyncio.Future[bytes] = loop.create_future()
            futures[corr] = future
            t0 = clock()
            tally.sent += 1
            await channel.default_exchange.publish(
                aio_pika.Message(
                    text.encode(),
                    correlation_id=corr,
                    reply_to=replies.name,
                    delivery_mode=PERSISTENT,
                ),
                routing_key=args.queue,
            )
            body = await asyncio.wait_for(future, args.drain_timeout)
            now = clock()
            tally.check(body.decode(), text + " world")
            if window[0] <= now < window[1]:
                tally.in_window += 1
                tally.hist.record_value(max(1, int((now - t0) * 1e6)))

    workers = [asyncio.create_task(worker(i)) for i in range(args.in_flight)]
    await asyncio.sleep(args.warmup)
    cpu0 = time.process_time()
    window[0] = clock()
    window[1] = window[0] + args.duration
    emit("window-start")
    await asyncio.sleep(args.duration)
    emit("window-end")
    cpu = time.process_time() - cpu0
    running = False
    await asyncio.gather(*workers, return_exceptions=True)
    await connection.close()
    return summary(tally, args.duration, args.in_flight, cpu)


def main() -> None:
    """Parse arguments and run the server or the client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.role == "server":
        aioloop.run(serve(args.rabbitmq_url, args.queue, args.in_flight))
    else:
        emit("result", mode="amqp", **aioloop.run(drive(args)))


if __name__ == "__main__":
    main()
