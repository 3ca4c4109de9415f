"""The processes of one benchmark run: the systems measured, and the drivers of each window.

:class:`Systems` starts each system as subprocesses on free ports against the broker
(the reference design, hopline's gateway and processors, the two ceilings), waits
until each answers, and at the end stops every process it started (load drivers
included: :mod:`scenarios` starts them through :meth:`Systems.start`) and deletes
the queues the run declared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import procs
from probe import http_get, log, round_trip, until
from yarl import URL

__all__ = ["BENCH", "PY", "System", "Systems"]

BENCH = Path(__file__).resolve().parent
PY = sys.executable


@dataclass
class System:
    """One thing measured: how to reach it, which processes to watch, how to drive it."""

    key: str
    procs: list[procs.Proc]
    watch: dict[str, int]
    url: str = ""  # WebSocket URL; empty for the bare AMQP ceiling
    metrics_url: str = ""  # hopline's /metrics, scraped around each window
    amqp_args: list[str] = field(default_factory=list)  # the AMQP ceiling's client arguments


class Systems:
    """The processes of one run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.url = args.rabbitmq_url
        self.run_id = uuid.uuid4().hex[:8]
        self.started: list[procs.Proc] = []
        self.queues: list[str] = []
        self.broker_pid = procs.broker_pid(URL(self.url).port or 5672)
        self.hopline_args: list[str] = []  # set by setup_hopline
        self.processor_watch: dict[str, int] = {}

    async def start(self, name: str, argv: list[str], **kw: Any) -> procs.Proc:
        """Start a process owned by this run."""
        proc = await procs.start(name, argv, self.log_dir, **kw)
        self.started.append(proc)
        return proc

    async def stop(self, *ps: procs.Proc) -> None:
        """Stop processes of this run."""
        await asyncio.gather(*(p.stop() for p in ps))

    async def stop_all(self) -> None:
        """Stop whatever is still running and delete the queues this run declared."""
        await self.stop(*self.started)
        if not self.queues:
            return
        try:
            conn = await aio_pika.connect(self.url, timeout=5)
            async with conn:
                for name in self.queues:
                    channel = await conn.channel()
                    with contextlib.suppress(aio_pika.exceptions.AMQPError):
                        await channel.queue_delete(name)
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            log(f"could not delete queues {self.queues}: {exc}")

    # Systems

    async def setup_reference(self) -> System:
        """The original design: FastAPI/uvicorn gateway and prefetch-5 processor."""
        prefix = f"ref_{self.run_id}"
        self.queues += [f"{prefix}_input_queue", f"{prefix}_output_queue"]
        port = procs.free_port()
        common = ["--rabbitmq-url", self.url, "--prefix", prefix]
        ref = BENCH / "reference"
        gw = await self.start(
            "ref-gateway", [PY, str(ref / "gateway.py"), "--port", str(port), *common]
        )
        proc = await self.start("ref-processor", [PY, str(ref / "processor.py"), *common])
        url = f"ws://127.0.0.1:{port}/ws"
        await until(lambda: round_trip(url, "ready", "ready world"), 30, "the reference to answer")
        watch = {"gateway": gw.pid, "processor": proc.pid, "broker": self.broker_pid or 0}
        return System("reference", [gw, proc], watch, url=url)

    async def setup_hopline(self) -> tuple[System, list[procs.Proc]]:
        """hopline's gateway (default settings) and ``--processors`` processors."""
        queue = f"bench.{self.run_id}"
        self.queues += [queue, f"{queue}.batch"]
        self.hopline_args = ["--rabbitmq-url", self.url, "--input-queue", queue]
        processors = [
            await self.start(
                f"hopline-processor-{i}", [PY, "-m", "hopline", "processor", *self.hopline_args]
            )
            for i in range(self.args.processors)
        ]
        self.processor_watch = {f"processor-{i}": p.pid for i, p in enumerate(processors)}
        return await self.setup_hopline_gateway("hopline"), processors

    async def setup_hopline_gateway(
        self, key: str, persistent: bool = False, workers: int = 1
    ) -> System:
        """A hopline gateway on the run's input queue, ready and batching.

        With ``workers`` > 1 (``--workers N``) every worker must report batching
        (each /health request lands on the worker the kernel picks), and its
        watched CPU is the supervisor's plus every worker's.
        """
        extra = ["--persistent"] if persistent else []
        if workers > 1:
            extra += ["--workers", str(workers)]
        gw = await self.start(
            f"{key}-gateway",
            [PY, "-m", "hopline", "gateway", "--host", "127.0.0.1", "--port", "0",
             *extra, *self.hopline_args],
        )  # fmt: skip
        port = int((await gw.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)).group(1))
        url = f"ws://127.0.0.1:{port}/ws"
        base = f"http://127.0.0.1:{port}"

        batching_workers: set[int] = set()

        async def batching() -> bool:
            health = json.loads(await http_get(f"{base}/health"))
            if health.get("batching") is True:
                batching_workers.add(health.get("worker", {}).get("index", 0))
            return len(batching_workers) >= workers

        await until(batching, 30, f"{key} batching to be active")
        await until(lambda: round_trip(url, "ready", "ready world"), 30, f"{key} to answer")
        watch = {"gateway": gw.pid, "broker": self.broker_pid or 0, **self.processor_watch}
        if workers > 1:
            watch |= {f"gateway-worker-{i}": pid for i, pid in enumerate(procs.children(gw.pid))}
            return System(key, [gw], watch, url=url)  # /metrics is one worker's: not scraped
        return System(key, [gw], watch, url=url, metrics_url=f"{base}/metrics")

    async def setup_echo(self) -> System:
        """Ceiling: a bare websockets echo server."""
        echo = await self.start("echo-server", [PY, str(BENCH / "echo_server.py"), "--port", "0"])
        match = await echo.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)
        url = f"ws://127.0.0.1:{match.group(1)}/ws"
        return System("echo", [echo], {"server": echo.pid}, url=url)

    async def setup_amqp(self) -> System:
        """Ceiling: a bare aio-pika RPC server (its client is started per window)."""
        queue = f"bench.amqp.{self.run_id}"
        self.queues.append(queue)
        common = ["--rabbitmq-url", self.url, "--queue", queue, "--in-flight", "100"]
        server = await self.start(
            "amqp-server", [PY, str(BENCH / "amqp_rtt.py"), "server", *common]
        )
        await server.wait_log("consuming", 30)
        watch = {"server": server.pid, "broker": self.broker_pid or 0}
        return System("amqp", [server], watch, amqp_args=common)
