"""Client CPU per AMQP publish (confirms on): aio-pika's Exchange.publish, aiormq's, hopline's.

``hopline_underlay_us`` is how the gateway published until hopline.wire.publish;
``hopline_publish_us`` is that module (what the gateway and the processor use now).

Sizes how much of the gateway's and the processor's per-message cost is aio-pika's
wrapper (``aio_pika.Message``, its attribute guard, the robust channel) rather than
the AMQP work itself. Publishes ``--messages`` transient messages to a temporary
queue, ``--in-flight`` awaiting their confirm at a time, once per client, and
prints the process CPU microseconds per publish (``time.process_time``).

Run: ``.venv/bin/python bench/amqp_publish_cost.py [--messages 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import aio_pika
import aioloop
import aiormq
from pamqp.commands import Basic

from hopline.wire.publish import publish


async def bench_aio_pika(url: str, queue: str, n: int, in_flight: int) -> float:
    """CPU µs per publish through aio_pika.Message + Exchange.publish."""
    conn = await aio_pika.connect_robust(url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)

        async def one(i: int) -> None:
            message = aio_pika.Message(
                f"m{i}".encode(),
                correlation_id=str(uuid.uuid4()),
                reply_to="nowhere",
                expiration=30,
                headers={"x-hopline-deadline-ms": 0},
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            )
            await channel.default_exchange.publish(message, routing_key=queue)

        return await _timed(one, n, in_flight)


async def bench_aiormq(url: str, queue: str, n: int, in_flight: int) -> float:
    """CPU µs per publish through aiormq's basic_publish with pamqp properties."""
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)

        async def one(i: int) -> None:
            props = Basic.Properties(
                correlation_id=str(uuid.uuid4()),
                reply_to="nowhere",
                expiration="30000",
                headers={"x-hopline-deadline-ms": 0},
                delivery_mode=1,
            )
            await channel.basic_publish(f"m{i}".encode(), routing_key=queue, properties=props)

        return await _timed(one, n, in_flight)
    finally:
        await conn.close()


async def bench_underlay(url: str, queue: str, n: int, in_flight: int) -> float:
    """CPU µs per publish as hopline's gateway published before hopline.wire.publish.

    aio-pika's robust connection and channel (reconnects, on_return_raises), but the
    publish goes to the underlying aiormq channel with pamqp properties, a
    ``message_id`` (so aiormq draws no UUID) and ``wait=False`` (only the confirm
    is awaited, not the write), inside the request's deadline.
    """
    return await _underlay(url, queue, n, in_flight, fast=False)


async def bench_fast(url: str, queue: str, n: int, in_flight: int) -> float:
    """CPU µs per publish as hopline publishes now: as above, through hopline.wire.publish."""
    return await _underlay(url, queue, n, in_flight, fast=True)


async def _underlay(url: str, queue: str, n: int, in_flight: int, *, fast: bool) -> float:
    conn = await aio_pika.connect_robust(url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)

        async def one(i: int) -> None:
            corr = str(uuid.uuid4())
            props = Basic.Properties(
                content_type="text/plain",
                correlation_id=corr,
                delivery_mode=1,
                expiration="30000",
                headers={"x-hopline-deadline-ms": 0},
                message_id=corr,
                reply_to="nowhere",
            )
            underlay = await channel.get_underlay_channel()
            async with asyncio.timeout(30):
                if fast:
                    await publish(
                        underlay, f"m{i}".encode(), routing_key=queue, properties=props,
                        mandatory=True,
                    )  # fmt: skip
                else:
                    await underlay.basic_publish(
                        f"m{i}".encode(), routing_key=queue, properties=props, mandatory=True,
                        wait=False,
                    )  # fmt: skip

        return await _timed(one, n, in_flight)


async def _timed(one, n: int, in_flight: int) -> float:  # type: ignore[no-untyped-def]
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            await one(i)

    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return round((time.process_time() - cpu0) / n * 1e6, 1)


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    """Declare a temporary queue, run both clients twice (alternating), delete it."""
    queue = f"bench.publish.{uuid.uuid4().hex[:8]}"
    conn = await aio_pika.connect(args.rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        await channel.declare_queue(queue, arguments={"x-max-length": 1000})
        try:
            result: dict[str, list[float]] = {
                "aio_pika_us": [], "aiormq_us": [], "hopline_underlay_us": [],
                "hopline_publish_us": [],
            }  # fmt: skip
            for _ in range(args.rounds):
                n, k, url = args.messages, args.in_flight, args.rabbitmq_url
                result["aio_pika_us"].append(await bench_aio_pika(url, queue, n, k))
                result["aiormq_us"].append(await bench_aiormq(url, queue, n, k))
                result["hopline_underlay_us"].append(await bench_underlay(url, queue, n, k))
                result["hopline_publish_us"].append(await bench_fast(url, queue, n, k))
        finally:
            await channel.queue_delete(queue)
    return {"messages": args.messages, "in_flight": args.in_flight, **result}


def main() -> None:
    """Parse arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds [2]")
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args()
    print(json.dumps(aioloop.run(main_async(args))))


if __name__ == "__main__":
    main()
