"""hopline up as a user runs it, and /health while the broker is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from yarl import URL

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.broker_node import PrivateBroker, free_port, port_answers
from hopline.cli import main
from hopline.settings import build, declared
from hopline.up import _crowded_hint
from hopline.wire.amqp import QueueTopology
from processor.config import ProcessorSettings
from tests.conftest import delete_queues
from tests.helpers import children_of, eventually, http_get


async def start_up(*args: str, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``hopline up`` and return once it printed its URLs (or fail with its output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hopline",
        "up",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    output = ""
    async with asyncio.timeout(90):
        while "Ctrl-C stops everything." not in output:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"hopline up exited early:\n{output}")
            output += line.decode()
    return proc, output


async def stop_up(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode


async def test_up_serves_and_stops_cleanly(rabbitmq_url: str) -> None:
    """hopline up prints its URLs, answers hello, and exits 0 on SIGTERM."""
    port = free_port()
    queue = f"test-up-{uuid.uuid4().hex[:8]}"
    proc, output = await start_up(
        "--port",
        str(port),
        "--processors",
        "2",
        "--input-queue",
        queue,
        env={"RABBITMQ_URL": rabbitmq_url},
    )
    try:
        assert f"ws://localhost:{port}/ws" in output
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello world"
        health = await http_get(f"http://127.0.0.1:{port}/health")
        assert health.json()["status"] == "healthy"
    finally:
        code = await stop_up(proc)
        await delete_queues(rabbitmq_url, QueueTopology(input_queue=queue))
    assert code == 0
    assert not port_answers("127.0.0.1", port)


async def test_up_starts_a_private_broker_when_none_answers() -> None:
    """With RABBITMQ_URL unreachable, up runs its own node and removes it on exit."""
    port = free_port()
    dead_url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    proc, output = await start_up(
        "--port", str(port), "--processors", "1", env={"RABBITMQ_URL": dead_url}
    )
    try:
        assert "private node" in output
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello world"
    finally:
        code = await stop_up(proc)
    assert code == 0


@pytest.fixture
async def private_broker() -> AsyncIterator[PrivateBroker]:
    broker = PrivateBroker()
    await asyncio.to_thread(broker.start)
    yield broker
    await asyncio.to_thread(broker.cleanup)


async def test_health_is_unhealthy_while_the_broker_is_gone(private_broker: PrivateBroker) -> None:
    """/health is 200 with the broker up and 503 'unhealthy' once it stops."""
    gw = Gateway(
        GatewaySettings(
            rabbitmq_url=private_broker.url,
            host="127.0.0.1",
            port=0,
            topology=QueueTopology(input_queue="health-test"),
        )
    )
    await gw.start()
    try:
        url = f"http://127.0.0.1:{gw.port}/health"
        assert (await http_get(url)).status == 200
        await asyncio.to_thread(private_broker.stop)

        async def unhealthy() -> bool:
            response = await http_get(url)
            return response.status == 503 and response.json()["status"] == "unhealthy"

        await eventually(unhealthy, timeout=15, message="/health turning 503")
        body = (await http_get(url)).json()
        assert body["broker"] == "disconnected"
    finally:
        await gw.stop()


async def test_up_with_two_gateway_workers_serves_and_stops_cleanly(rabbitmq_url: str) -> None:
    """hopline up --workers 2: both gateway processes answer on one port; SIGTERM exits 0."""
    port = free_port()
    queue = f"test-up-{uuid.uuid4().hex[:8]}"
    proc, output = await start_up(
        *("--port", str(port), "--processors", "1", "--workers", "2", "--input-queue", queue),
        env={"RABBITMQ_URL": rabbitmq_url},
    )
    try:
        assert f"workers     2 gateway processes on port {port}" in output
        workers, processors = 2, 1
        crowded = workers + processors > (os.cpu_count() or 1)
        assert ("one gateway process may serve more" in output) == crowded, output
        seen: set[int] = set()

        async def both_answer() -> bool:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello world"
            health = await http_get(f"http://127.0.0.1:{port}/health")
            seen.add(health.json()["worker"]["index"])
            return seen == {0, 1}

        await eventually(both_answer, timeout=30, message="both workers answering")
    finally:
        code = await stop_up(proc)
        await delete_queues(rabbitmq_url, QueueTopology(input_queue=queue))
    assert code == 0
    assert not port_answers("127.0.0.1", port)


def parse_hopline(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """The options ``hopline ARGS`` parses (one command, no group option) with ``env``'s
    HOPLINE_* and RABBITMQ_URL variables (and no other)."""
    command, *options = args
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("HOPLINE_") or key == "RABBITMQ_URL":
                mp.delenv(key)
        for key, value in env.items():
            if key.startswith("HOPLINE_") or key == "RABBITMQ_URL":
                mp.setenv(key, value)
        group = main.make_context("hopline", [command])
        found = main.get_command(group, command)
        assert found is not None
        return found.make_context(command, options, parent=group).params


def proc_strings(pid: int, name: str) -> list[str]:
    """/proc/<pid>/<name> (cmdline, environ): NUL-separated strings."""
    raw = (Path("/proc") / str(pid) / name).read_bytes()
    return [item.decode() for item in raw.split(b"\0") if item]


async def test_every_processor_setting_reaches_the_processors(rabbitmq_url: str) -> None:
    """Each processor option given to `hopline up` is what its processors run with: read back
    from each child's environment as `hopline processor` parses it (their command line holds
    nothing else than the command), and the handler chosen answers."""
    queue = f"test-up-{uuid.uuid4().hex[:8]}"
    other_address = str(URL(rabbitmq_url).update_query(heartbeat=30))  # the same broker
    options = {
        "rabbitmq_url": ["--rabbitmq-url", rabbitmq_url, "--rabbitmq-url", other_address],
        "rabbitmq_order": ["--rabbitmq-order", "listed"],
        "input_queue": ["--input-queue", queue],
        "queue_type": ["--queue-type", "quorum"],
        "max_queue_length": ["--max-queue-length", "1000"],
        "max_queue_bytes": ["--max-queue-bytes", "10000000"],
        "delivery_limit": ["--delivery-limit", "5"],
        "handler": ["--handler", "upper"],
        "prefetch": ["--prefetch", "7"],
        "concurrency": ["--concurrency", "3"],
        "prefetch_bytes": ["--prefetch-bytes", "123456"],
    }
    # A new processor setting fails here until it is given a value above.
    assert set(options) == set(declared(ProcessorSettings))
    args = [arg for option in options.values() for arg in option]
    given = parse_hopline(["up", *args], dict(os.environ))
    defaults = parse_hopline(["up"], dict(os.environ))
    assert [name for name in options if given[name] == defaults[name]] == []
    expected = build(ProcessorSettings, given)
    port = free_port()
    proc, _ = await start_up("--port", str(port), "--processors", "2", *args, env={})
    try:
        children = children_of(proc.pid)
        assert len(children) == 2
        for child in children:
            command = proc_strings(child, "cmdline")
            assert command[1:] == ["-m", "hopline", "processor"]
            env = dict(item.partition("=")[::2] for item in proc_strings(child, "environ"))
            assert build(ProcessorSettings, parse_hopline(command[3:], env)) == expected
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "HELLO"
    finally:
        code = await stop_up(proc)
        await delete_queues(rabbitmq_url, QueueTopology(input_queue=queue))
    assert code == 0


@pytest.mark.parametrize(
    ("workers", "processors", "cores", "noted"),
    [(2, 2, 2, True), (2, 1, 2, True), (2, 2, 8, False), (1, 4, 2, False), (4, 0, 4, False)],
)
def test_the_banner_notes_workers_that_outnumber_the_cores(
    monkeypatch: pytest.MonkeyPatch, workers: int, processors: int, cores: int, noted: bool
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    lines = _crowded_hint(processors, workers)
    assert bool(lines) == noted
    if noted:
        assert lines == [
            f"  note        {workers} gateway processes and {processors} processors on "
            f"{cores} cores: one gateway process may serve more (docs/performance.md)"
        ]
