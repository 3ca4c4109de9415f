"""Fault 1: processors killed with SIGKILL mid-load, repeatedly. Their unacked requests go
to a survivor; every request gets exactly one answer; duplicate replies never reach a client."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import aio_pika

from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, ws_url
from tests.faults.conftest import ProcessorProcess, queue_counts, spawn_processor, subprocess_env
from tests.faults.ledger import Ledger, drive
from tests.helpers import eventually

KILLS = 3
ANSWERS_BETWEEN_KILLS = 150


def _handlers_by_payload(trace: Path) -> dict[str, set[str]]:
    """payload -> pids of the processors whose handler ran on it."""
    pids: dict[str, set[str]] = defaultdict(set)
    for line in trace.read_text().splitlines():
        pid, _, payload = line.partition(" ")
        pids[payload].add(pid)
    return pids


async def test_sigkilled_processors_lose_and_duplicate_nothing(
    stack: Stack,
    rabbitmq_url: str,
    topology: QueueTopology,
    tmp_path: Path,
    processes: list[ProcessorProcess],
) -> None:
    """Three times, a processor under load is SIGKILLed and replaced; nothing is lost."""
    gw = await stack.gateway(request_timeout=20.0)
    trace = tmp_path / "handled.log"
    env = subprocess_env(HOPLINE_FAULTS_LOG=str(trace), HOPLINE_FAULTS_DELAY="0.05")

    async def start_processor() -> ProcessorProcess:
        proc = await spawn_processor(
            rabbitmq_url,
            topology,
            "tests.faults.handlers:slow_echo",
            tmp_path,
            "--prefetch",
            "4",
            env=env,
        )
        processes.append(proc)
        return proc

    live = [await start_processor() for _ in range(3)]

    async def consumers(n: int) -> bool:
        return (await queue_counts(rabbitmq_url, topology.batch_queue))[1] == n

    await eventually(lambda: consumers(3), timeout=20, message="three processors consuming")
    await stack.batching_ready(gw)

    ledger = Ledger("processor SIGKILL x3")
    stop = asyncio.Event()
    clients = [
        asyncio.ensure_future(drive(ws_url(gw), ledger, f"c{i}", stop=stop, window=16))
        for i in range(4)
    ]
    killed: list[int] = []
    for _ in range(KILLS):
        target = ledger.answered + ANSWERS_BETWEEN_KILLS
        await eventually(lambda t=target: ledger.answered >= t, timeout=30, message="progress")
        victim = live.pop(0)
        victim.kill()
        assert await victim.wait() == -9
        killed.append(victim.pid)
        live.append(await start_processor())
        await eventually(lambda: consumers(3), timeout=20, message="replacement consuming")
    target = ledger.answered + ANSWERS_BETWEEN_KILLS
    await eventually(lambda: ledger.answered >= target, timeout=30, message="progress after kills")
    stop.set()
    await asyncio.gather(*clients)
    for proc in live:  # the survivors stop cleanly
        proc.terminate()
    assert [await proc.wait() for proc in live] == [0, 0, 0]

    handled = _handlers_by_payload(trace)
    rerun = sum(1 for pids in handled.values() if len(pids) > 1)
    dropped = gw.metrics.total("hopline_dropped_replies_total")
    print(
        f"[processor SIGKILL x3] handler re-ran for {rerun} requests after a kill, "
        f"{dropped} duplicate replies dropped by the gateway"
    )
    ledger.assert_complete()
    assert ledger.errors == {}, "with survivors, every request should get its reply"
    assert all(cid in handled for cid in ledger.sent), "a reply without a handler run"
    assert rerun > 0, "no kill hit a processor holding unacked requests: the test proved nothing"


async def test_duplicate_replies_never_reach_the_client(
    stack: Stack, rabbitmq_url: str, topology: QueueTopology
) -> None:
    """A processor that answers every request twice (as after a redelivery): one reply each."""
    gw = await stack.gateway(request_timeout=10.0, batching="off")
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(
            topology.input_queue, durable=True, arguments=topology.arguments()
        )

        async def answer_twice(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            for _ in range(2):
                reply = aio_pika.Message(message.body, correlation_id=message.correlation_id)
                await channel.default_exchange.publish(reply, routing_key=message.reply_to or "")
            await message.ack()

        await queue.consume(answer_twice)
        ledger = Ledger("every reply sent twice")
        await drive(ws_url(gw), ledger, "d", count=50, window=10)

        async def all_dropped() -> bool:
            return gw.metrics.total("hopline_dropped_replies_total") == 50

        await eventually(all_dropped, message="50 duplicates dropped by the gateway")
    print(f"[duplicate replies] {gw.metrics.total('hopline_dropped_replies_total')} dropped")
    ledger.assert_complete()
    assert ledger.replies == 50
