"""Fixtures for the fault tests: a private RabbitMQ node to break, processors as subprocesses.

The private node is shared by the whole ``tests/faults`` package (it takes 8-15 s
to start); tests that restart it leave it running on the same port and data
directory, and tests that set an alarm clear it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
from yarl import URL

from hopline.broker_node import PrivateBroker, rabbitmq_server_path
from hopline.wire.amqp import QueueTopology
from tests.conftest import delete_queues
from tests.faults.proxy import TCPProxy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def private_broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of our own, on free ports, that tests may stop, kill and restart."""
    if rabbitmq_server_path() is None:
        pytest.fail("the fault tests need rabbitmq-server installed (apt install rabbitmq-server)")
    node = PrivateBroker()
    node.start()
    yield node
    node.cleanup()


@pytest.fixture
async def proxy(rabbitmq_url: str) -> AsyncIterator[TCPProxy]:
    """A TCP proxy in front of the test broker (see tests/faults/proxy.py)."""
    target = URL(rabbitmq_url)
    p = TCPProxy(target.host or "127.0.0.1", target.port or 5672)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def private_topology(private_broker: PrivateBroker) -> AsyncIterator[QueueTopology]:
    """Fresh queue names on the private node; deleted afterwards if the node is up."""
    topo = QueueTopology(input_queue=f"fault-{uuid.uuid4().hex[:12]}")
    yield topo
    with contextlib.suppress(Exception):
        await delete_queues(private_broker.url, topo)


async def queue_counts(url: str, name: str) -> tuple[int, int]:
    """``(ready messages, consumers)`` of queue ``name``, read on a fresh connection."""
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return result.message_count or 0, result.consumer_count or 0


@dataclass
class ProcessorProcess:
    """A ``hopline processor`` subprocess."""

    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 30.0) -> int:
        async with asyncio.timeout(timeout):
            return await self.proc.wait()


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for hopline subprocesses: this checkout importable, plain asyncio loop."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


async def spawn_processor(
    url: str,
    topology: QueueTopology,
    handler: str,
    log_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> ProcessorProcess:
    """Start ``python -m hopline processor`` on ``topology``'s queues (returns at once)."""
    log = log_dir / f"processor-{uuid.uuid4().hex[:6]}.log"
    cmd = [
        sys.executable, "-m", "hopline", "-v", "processor",
        "--rabbitmq-url", url,
        "--input-queue", topology.input_queue,
        "--queue-type", topology.queue_type,
        "--handler", handler,
        *args,
    ]  # fmt: skip
    if topology.delivery_limit is not None:
        cmd += ["--delivery-limit", str(topology.delivery_limit)]
    if topology.max_length is not None:
        cmd += ["--max-queue-length", str(topology.max_length)]
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=ROOT,
            env=env or subprocess_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        os.close(out)
    return ProcessorProcess(proc, log)


@pytest.fixture
async def processes() -> AsyncIterator[list[ProcessorProcess]]:
    """Subprocesses a test started; any still running are killed afterwards."""
    started: list[ProcessorProcess] = []
    yield started
    for p in started:
        if p.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
