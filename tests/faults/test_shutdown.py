"""Fault 7, graceful shutdown. SIGTERM on a gateway: /health turns 503, new sockets are
refused, in-flight requests get their replies up to the drain timeout (then an explicit
error), sockets close with 1001. SIGTERM on a processor: it stops consuming, finishes and
acks what it holds, exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, ws_url
from tests.faults.conftest import (
    ROOT,
    ProcessorProcess,
    queue_counts,
    spawn_processor,
    subprocess_env,
)
from tests.faults.ledger import Ledger, drive
from tests.helpers import eventually, http_get

DRAIN = 3.0


class GatewayProcess:
    """A ``hopline gateway`` subprocess on a free port."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.stderr: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    @classmethod
    async def start(cls, url: str, topology: QueueTopology, *args: str) -> GatewayProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hopline", "gateway",
            "--rabbitmq-url", url,
            "--input-queue", topology.input_queue,
            "--host", "127.0.0.1",
            "--port", "0",
            *args,
            cwd=ROOT,
            env=subprocess_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, f"gateway exited with {await proc.wait()}"
                match = re.search(r"listening on ws://[^:]+:(\d+)/ws", line)
                if match:
                    return cls(proc, int(match.group(1)))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait(self, timeout: float = 30.0) -> int:
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
            return code


@pytest.fixture
async def gateway_processes() -> AsyncIterator[list[GatewayProcess]]:
    """Gateway subprocesses a test started; killed afterwards if still running."""
    started: list[GatewayProcess] = []
    yield started
    for gw in started:
        if gw.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                gw.proc.kill()
            await gw.wait()


class Hold:
    """Async handler: 'slow-*' waits for ``release``, 'stuck-*' waits for ``unstick``."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.unstick = asyncio.Event()

    async def __call__(self, payload: str | bytes) -> str | bytes:
        await (self.unstick if str(payload).startswith("stuck") else self.release).wait()
        return payload


async def test_sigterm_on_gateway_drains_then_closes_with_1001(
    stack: Stack,
    rabbitmq_url: str,
    topology: QueueTopology,
    gateway_processes: list[GatewayProcess],
) -> None:
    """In-flight requests are answered while draining, late ones get an error, then 1001."""
    gw = await GatewayProcess.start(
        rabbitmq_url, topology, "--drain-timeout", str(DRAIN), "--request-timeout", "30"
    )
    gateway_processes.append(gw)
    hold = Hold()
    proc = await stack.processor(hold, prefetch=32)
    ledger = Ledger("gateway SIGTERM")
    payloads = [f"slow-{i}" for i in range(10)] + ["stuck-0", "stuck-1"]
    url = f"ws://127.0.0.1:{gw.port}/ws"
    try:
        async with connect(url, subprotocols=["hopline.v1"]) as ws:
            for p in payloads:
                ledger.sent.append(p)
                await ws.send(json.dumps({"id": p, "data": p}))
            await eventually(lambda: proc.in_progress == 12, message="all twelve being handled")

            gw.proc.send_signal(signal.SIGTERM)

            async def unhealthy() -> bool:
                return (await http_get(gw.url("/health"))).status == 503

            await eventually(unhealthy, message="/health 503 while draining")
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 503
            ledger.sent.append("late")  # on the open socket, after SIGTERM
            await ws.send(json.dumps({"id": "late", "data": "late"}))
            hold.release.set()
            with contextlib.suppress(ConnectionClosed):
                async for frame in ws:
                    obj = json.loads(frame)
                    ledger.record(obj["id"], obj["error"]["code"] if "error" in obj else "reply")
            ledger.close_codes[ws.close_code] += 1
    finally:
        hold.release.set()
        hold.unstick.set()
    code = await gw.wait()
    ledger.assert_complete()
    assert ledger.replies == 10
    assert ledger.errors == {"unavailable": 3}  # 'late' at once, the two stuck at the timeout
    assert ledger.close_codes == {1001: 1}
    assert code == 0


async def test_sigterm_on_processor_finishes_held_work_and_stops_consuming(
    stack: Stack,
    rabbitmq_url: str,
    topology: QueueTopology,
    tmp_path: Path,
    processes: list[ProcessorProcess],
) -> None:
    """A SIGTERMed processor answers and acks what it holds, takes nothing new, exits 0."""
    gw = await stack.gateway(request_timeout=30.0, batching="off")
    trace = tmp_path / "handled.log"
    env = subprocess_env(HOPLINE_FAULTS_LOG=str(trace), HOPLINE_FAULTS_DELAY="2")
    victim = await spawn_processor(
        rabbitmq_url, topology, "tests.faults.handlers:slow_echo", tmp_path, "--prefetch", "16",
        env=env,
    )  # fmt: skip
    processes.append(victim)

    async def consumers(n: int) -> bool:
        return (await queue_counts(rabbitmq_url, topology.input_queue))[1] == n

    await eventually(lambda: consumers(1), timeout=20, message="processor consuming")
    held = Ledger("processor SIGTERM: held by it")
    first = asyncio.ensure_future(drive(ws_url(gw), held, "h", count=10, window=10))
    await eventually(
        lambda: trace.exists() and len(trace.read_text().splitlines()) == 10,
        message="ten requests in its handler",
    )
    victim.terminate()
    await eventually(lambda: consumers(0), message="consumer cancelled")
    later = Ledger("processor SIGTERM: sent after")
    second = asyncio.ensure_future(drive(ws_url(gw), later, "n", count=5, window=5))

    async def waiting(n: int) -> bool:
        return (await queue_counts(rabbitmq_url, topology.input_queue))[0] == n

    await eventually(lambda: waiting(5), message="new requests wait in the queue")
    assert await victim.wait() == 0
    await first
    held.assert_complete()
    assert held.replies == 10

    await stack.processor("echo")
    await second
    later.assert_complete()
    assert later.replies == 5
    lines = trace.read_text().splitlines()
    assert len(lines) == 10 and len(set(lines)) == 10, "a held request ran twice or late"
