"""``hopline gateway --workers N`` as a user runs it, against the real broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from yarl import URL

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.broker_node import port_answers
from hopline.wire.amqp import QueueTopology
from processor.config import ProcessorSettings
from processor.handlers import load_handler
from processor.worker import Processor
from tests.conftest import delete_queues
from tests.helpers import eventually, http_get

LISTENING = re.compile(rb"listening on ws://[^:]+:(\d+)/ws \((\d+) workers\)")


async def start_gateway(
    *args: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``hopline gateway`` with ``args``; return once it listens (or fail with its output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hopline",
        "gateway",
        "--host",
        "127.0.0.1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    output = b""
    async with asyncio.timeout(60):
        while (match := LISTENING.search(output)) is None:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"hopline gateway exited early:\n{output.decode()}")
            output += line
    return proc, int(match.group(1))


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, wait; exit code and the rest of the output."""
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
async def queue(rabbitmq_url: str) -> AsyncIterator[str]:
    name = f"test-workers-{uuid.uuid4().hex[:8]}"
    yield name
    await delete_queues(rabbitmq_url, QueueTopology(input_queue=name))


@pytest.fixture
async def processor(rabbitmq_url: str, queue: str) -> AsyncIterator[Processor]:
    settings = ProcessorSettings(rabbitmq_url=rabbitmq_url, topology=QueueTopology(queue))
    worker = Processor(settings, load_handler("world"))
    await worker.start()
    yield worker
    await worker.stop()


async def test_two_workers_both_serve_and_stop_cleanly(
    rabbitmq_url: str, queue: str, processor: Processor
) -> None:
    """Both workers answer on one port, each with its own reply queue; SIGTERM exits 0."""
    proc, port = await start_gateway(
        "--port", "0", "--workers", "2", "--input-queue", queue, env={"RABBITMQ_URL": rabbitmq_url}
    )
    try:
        seen: dict[int, dict] = {}

        async def both_seen() -> bool:
            worker = (await http_get(f"http://127.0.0.1:{port}/health")).json()["worker"]
            seen[worker["index"]] = worker
            return len(seen) == 2

        await eventually(both_seen, timeout=30, message="both workers answering /health")
        assert {w["count"] for w in seen.values()} == {2}
        assert len({w["pid"] for w in seen.values()}) == 2
        assert len({w["reply_queue"] for w in seen.values()}) == 2
        # Requests through many connections: every one answered, by both workers.
        answered_by: set[int] = set()

        async def one(i: int) -> None:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i} world"
            stats = (await http_get(f"http://127.0.0.1:{port}/stats")).json()
            if stats["replies_total"] > 0:
                answered_by.add(stats["worker"]["index"])

        for batch in range(8):
            await asyncio.gather(*(one(batch * 8 + i) for i in range(8)))
            if answered_by == {0, 1}:
                break
        assert answered_by == {0, 1}
    finally:
        code, output = await stop(proc)
    assert code == 0, output
    assert "Traceback" not in output
    assert not port_answers("127.0.0.1", port)
    for worker in seen.values():
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)


async def test_a_worker_that_cannot_start_fails_the_command_with_exit_3(
    rabbitmq_url: str, queue: str
) -> None:
    """The broker answers (preflight passes) but refuses the workers: exit 3, one error line."""
    url = str(URL(rabbitmq_url).with_path(f"/hopline-no-such-vhost-{uuid.uuid4().hex[:6]}"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hopline", "gateway", "--host", "127.0.0.1", "--port", "0",
        "--workers", "2", "--input-queue", queue, "--rabbitmq-url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 3
    text = err.decode()
    errors = [line for line in text.splitlines() if line.startswith("hopline: error:")]
    assert len(errors) == 1, text  # one line for the command, not one per worker
    assert errors[0].startswith("hopline: error: gateway worker ")
    assert "could not start: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1" in errors[0]
    assert "Traceback" not in text


async def test_workers_refuse_a_port_taken_by_another_program(
    rabbitmq_url: str, queue: str
) -> None:
    """The port is held by a plain listener (no SO_REUSEPORT): exit 3, nothing left running."""
    other = Gateway(
        GatewaySettings(
            rabbitmq_url=rabbitmq_url, host="127.0.0.1", port=0, topology=QueueTopology(queue)
        )
    )
    await other.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hopline", "gateway", "--host", "127.0.0.1",
            "--port", str(other.port), "--workers", "2", "--input-queue", queue,
            env={**os.environ, "RABBITMQ_URL": rabbitmq_url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
        assert proc.returncode == 3
        text = err.decode()
        errors = [line for line in text.splitlines() if line.startswith("hopline: error:")]
        assert len(errors) == 1, text
        assert f"cannot listen on 127.0.0.1:{other.port}" in errors[0]
        assert "Traceback" not in text
    finally:
        await other.stop()
