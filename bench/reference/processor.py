"""The original design's processor: prefetch 5, append " world", reply, ack.

Consumes the durable input queue with a consumer callback (aio-pika runs up to
``prefetch`` of them at once), publishes the reply persistent to ``reply_to`` with
the request's correlation id on a default channel (publisher confirms on), and
acks when the callback's ``message.process()`` block ends. Runs on uvloop when
installed (``HOPLINE_LOOP=asyncio`` opts out), like hopline and like uvicorn's
default ``loop="auto"`` in the reference gateway, so both designs get the same loop.

Run: ``python bench/reference/processor.py [--rabbitmq-url ...] [--prefix ref]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

PREFETCH = 5


async def serve(url: str, input_queue: str) -> None:
    """Consume ``input_queue`` until SIGTERM/SIGINT."""
    connection = await aio_pika.connect_robust(url)
    channel: AbstractChannel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(input_queue, durable=True)

    async def process_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            response = message.body.decode() + " world"
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body=response.encode(),
                    correlation_id=message.correlation_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.reply_to or "",
            )

    await queue.consume(process_message)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("reference processor consuming", input_queue, flush=True)
    await stop.wait()
    await connection.close()


def main() -> None:
    """Parse arguments and consume until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--prefix", default="ref", help="queue names: <prefix>_input_queue, ...")
    args = parser.parse_args()
    if os.environ.get("HOPLINE_LOOP", "uvloop") != "asyncio":
        with contextlib.suppress(ImportError):
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(serve(args.rabbitmq_url, f"{args.prefix}_input_queue"))
            return
    asyncio.run(serve(args.rabbitmq_url, f"{args.prefix}_input_queue"))


if __name__ == "__main__":
    main()
