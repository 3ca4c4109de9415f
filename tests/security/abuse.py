"""Helpers for the abuse tests: a gateway in a subprocess (to read its RSS and
descriptors from /proc) and a bystander client that must keep being answered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hopline.wire.amqp import QueueTopology
from tests.helpers import eventually, http_get

__all__ = ["Bystander", "GatewayProcess", "gateway_process", "rss_mib"]


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class GatewayProcess:
    """A ``hopline gateway`` subprocess."""

    process: asyncio.subprocess.Process
    port: int
    peak_rss: float = 0.0
    peak_fds: int = 0
    _stderr: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> tuple[float, int]:
        """Current RSS (MiB) and open descriptors; also kept as peaks."""
        rss = rss_mib(self.pid)
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_fds = max(self.peak_fds, fds)
        return rss, fds

    async def watch(self, interval: float = 0.05) -> None:
        """Sample until cancelled (run it as a task during an attack)."""
        while True:
            self.sample()
            await asyncio.sleep(interval)

    @property
    def log(self) -> str:
        return "".join(self._stderr)


@contextlib.asynccontextmanager
async def gateway_process(
    rabbitmq_url: str, topology: QueueTopology, *args: str, nofile: int | None = None
) -> AsyncIterator[GatewayProcess]:
    """Run ``python -m hopline gateway`` on a free port until the block ends."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hopline",
        "-v",
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--rabbitmq-url",
        rabbitmq_url,
        "--input-queue",
        topology.input_queue,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limit,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("gateway exited:\n" + "".join(lines))
                lines.append(line)
                match = re.search(r"listening on ws://[^:]+:(\d+)/ws", line)
                if match:
                    break
        gw = GatewayProcess(process, int(match.group(1)), _stderr=lines)

        async def drain_stderr() -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                lines.append(line.decode(errors="replace"))

        reader = asyncio.get_running_loop().create_task(drain_stderr())
        await eventually(
            lambda: _healthy(gw.port), timeout=20, message="gateway subprocess healthy"
        )
        try:
            yield gw
        finally:
            reader.cancel()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def _healthy(port: int) -> bool:
    try:
        return (await http_get(f"http://127.0.0.1:{port}/health", timeout=2)).status == 200
    except OSError:
        return False


class Bystander:
    """A client sending ``hello`` every ``interval`` s on its own socket; counts answers.

    Each request waits for its answer (a reply or an error frame) before the next
    is sent; ``unanswered`` counts requests with no answer within ``timeout``.
    """

    def __init__(self, port: int, interval: float = 0.2, timeout: float = 5.0) -> None:
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.sent = 0
        self.answered = 0
        self.unanswered = 0
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None

    async def __aenter__(self) -> Bystander:
        self._ws = await connect(f"ws://127.0.0.1:{self.port}/ws", ping_interval=None)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        while True:
            self.sent += 1
            started = loop.time()
            await self._ws.send("hello")
            try:
                async with asyncio.timeout(self.timeout):
                    await self._ws.recv()
                self.answered += 1
                self.latencies.append(loop.time() - started)
            except TimeoutError:
                self.unanswered += 1
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._ws is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await self._task
        # A request cut by the cancellation is not counted as sent.
        if self.sent > self.answered + self.unanswered:
            self.sent -= 1
        await self._ws.close()

    async def served(self, count: int, timeout: float = 30.0) -> None:
        """Return once ``count`` of its requests ended (answered or not); fail at ``timeout``.

        How many it sends in a given time depends on how loaded the machine is: a test
        waits for this, not for a fixed time, before :meth:`assert_served`.
        """
        await eventually(
            lambda: self.answered + self.unanswered >= count,
            timeout=timeout,
            message=f"{count} bystander requests ended",
        )

    def assert_served(self, at_least: int = 3) -> None:
        """Every request got an answer, and the bystander did send during the attack."""
        assert self.sent >= at_least, f"the bystander sent only {self.sent} requests"
        assert self.unanswered == 0 and self.answered == self.sent, (
            f"bystander: {self.answered} of {self.sent} answered"
        )
