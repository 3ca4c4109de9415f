"""Fault 6: a poison message, a request that kills its processor every time. It is retried
``--delivery-limit`` times, then dead-lettered to ``<queue>.dead`` and its client gets
``processor_error``; other traffic keeps flowing. Classic and quorum input queues."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import pytest

from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, delete_queues, ws_url
from tests.faults.conftest import ProcessorProcess, queue_counts, spawn_processor, subprocess_env
from tests.faults.ledger import Ledger, drive
from tests.helpers import eventually

LIMIT = 3


class Supervisor:
    """Keep ``size`` processor subprocesses running, as systemd or Kubernetes would."""

    def __init__(self) -> None:
        self.crashes = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def keep(
        self,
        spawn: Callable[[], Awaitable[ProcessorProcess]],
        processes: list[ProcessorProcess],
        size: int,
    ) -> None:
        async def slot() -> None:
            while True:
                proc = await spawn()
                processes.append(proc)
                code = await proc.proc.wait()
                if code == 3:  # os._exit(3): the poison
                    self.crashes += 1

        self.tasks = [asyncio.ensure_future(slot()) for _ in range(size)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_poison_request_is_dead_lettered_after_the_limit_and_others_flow(
    queue_type: str,
    request: pytest.FixtureRequest,
    rabbitmq_url: str,
    tmp_path: Path,
    processes: list[ProcessorProcess],
) -> None:
    """'poison' runs the handler LIMIT times, lands in <queue>.dead, its client gets an error."""
    # Quorum queues go to the private node: they outlive tests on the shared broker's disk.
    url = request.getfixturevalue("private_broker").url if queue_type == "quorum" else rabbitmq_url
    topology = QueueTopology(
        input_queue=f"poison-{uuid.uuid4().hex[:12]}",
        queue_type=queue_type,  # type: ignore[arg-type]
        delivery_limit=LIMIT,
    )
    stack = Stack(url, topology)
    trace = tmp_path / "handled.log"
    env = subprocess_env(HOPLINE_FAULTS_LOG=str(trace))
    supervisor = Supervisor()
    try:
        gw = await stack.gateway(request_timeout=30.0, batching="off")

        async def spawn() -> ProcessorProcess:
            return await spawn_processor(
                url,
                topology,
                "tests.faults.handlers:crash_on_poison",
                tmp_path,
                "--prefetch",
                "1",
                env=env,
            )

        await supervisor.keep(spawn, processes, size=2)

        async def consumers() -> bool:
            return (await queue_counts(url, topology.input_queue))[1] == 2

        await eventually(consumers, timeout=20, message="two processors consuming")
        others = Ledger(f"poison ({queue_type}): other traffic")
        poison = Ledger(f"poison ({queue_type}): the poison request")
        stop = asyncio.Event()
        clients = [
            asyncio.ensure_future(drive(ws_url(gw), others, f"ok{i}", stop=stop, pace=0.01))
            for i in range(2)
        ]
        await drive(ws_url(gw), poison, "p", count=1, payload=lambda cid: "poison", settle=40)
        answered = others.answered
        await eventually(lambda: others.answered > answered + 20, message="traffic after poison")
        stop.set()
        await asyncio.gather(*clients)
        await supervisor.stop()
        poison_runs = sum(1 for line in trace.read_text().splitlines() if line.endswith(" poison"))
        print(
            f"[poison {queue_type}] handler ran {poison_runs} times on it, "
            f"{supervisor.crashes} processor crashes"
        )
        poison.assert_complete()
        assert poison.errors == {"processor_error": 1}
        assert poison_runs == LIMIT
        assert supervisor.crashes == LIMIT
        others.assert_complete()
        assert others.errors == {}, "innocent requests were hurt"

        dead = await _dead_letters(url, topology)
        assert [m.body for m in dead] == [b"poison"]
        assert dead[0].reply_to == gw.broker.reply_queue_name  # inspectable, replayable
    finally:
        await supervisor.stop()
        await stack.close()
        with contextlib.suppress(Exception):
            await delete_queues(url, topology)


async def _dead_letters(url: str, topology: QueueTopology) -> list[aio_pika.IncomingMessage]:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(topology.dead_letter_queue, passive=True)
        messages = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            messages.append(message)
        return messages
