"""Gateway memory under two abusive loads, with a bystander client (issue 15).

Scenarios (each against a fresh ``hopline gateway`` subprocess on its own queue):

* ``pipeline``: one socket pipelines 16 KiB requests to a healthy ``echo`` processor
  as fast as the gateway lets it, for ``--seconds``; then everything goes quiet for
  ``--settle`` seconds to see the resident size fall back.
* ``stalled``: ``--sockets`` sockets each keep a full window of 64 KiB requests in
  flight while no processor consumes (``unavailable`` once the gateway noticed, or
  ``busy`` at its caps), or with ``--stalled-processor`` while one processor takes
  requests and never answers (``busy`` at the caps; requests that got in wait for
  their deadline).

During both, a bystander sends ``hello`` every 200 ms on its own socket and
records how long each answer (reply or error) took. The gateway's resident size is
sampled from ``/proc/<pid>/status`` every 100 ms. Prints one JSON object::

    .venv/bin/python bench/abuse_memory.py pipeline --seconds 30 --settle 10
    .venv/bin/python bench/abuse_memory.py stalled --sockets 200 --seconds 20
    .venv/bin/python bench/abuse_memory.py stalled --sockets 200 --seconds 20 --stalled-processor

Exit code 0 when it ran (bounds are judged by the reader, or by
tests/security/test_memory_bounds.py), 3 when something could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident size of ``pid`` in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler:
    """Samples a process' resident size every 100 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - t0, rss_mib(self.pid)))
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def peak(self, since: float = 0.0, until: float = float("inf")) -> float:
        return max((r for t, r in self.samples if since <= t <= until), default=0.0)

    def last(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


class Bystander:
    """Sends ``hello`` every 200 ms; records each answer's kind and latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.kinds: dict[str, int] = {}
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async with connect(self.url, subprotocols=["hopline.v1"], max_size=None) as ws:  # type: ignore[list-item]
            sent_at: dict[int, float] = {}

            async def read() -> None:
                async for frame in ws:
                    reply = json.loads(frame)
                    t0 = sent_at.pop(reply["id"])
                    self.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    kind = "ok" if "data" in reply else reply["error"]["code"]
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1

            reader = asyncio.get_running_loop().create_task(read())
            try:
                while True:
                    self.sent += 1
                    sent_at[self.sent] = time.perf_counter()
                    await ws.send(json.dumps({"id": self.sent, "data": "hello"}))
                    await asyncio.sleep(0.2)
            finally:
                reader.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await self._task

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

        return {
            "sent": self.sent,
            "answered": len(lat),
            "kinds": self.kinds,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "over_1s": sum(1 for x in lat if x > 1000) + (self.sent - len(lat)),
        }


async def pipeline(ws: ClientConnection, size: int, stop: asyncio.Event) -> dict[str, int]:
    """Send ``size``-byte requests back to back, reading replies as they come."""
    payload = "x" * (size - 40)
    counts = {"sent": 0, "answered": 0}

    async def reader() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                counts["answered"] += 1

    task = asyncio.get_running_loop().create_task(reader())
    try:
        while not stop.is_set():
            await ws.send(json.dumps({"id": counts["sent"], "data": payload}))
            counts["sent"] += 1
            await asyncio.sleep(0)  # a send may not yield: give every socket its turn
    except ConnectionClosed:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return counts


async def attack(url: str, sockets: int, size: int, seconds: float) -> dict[str, int]:
    """The attacking sockets, run in their own process (see ``_attack``)."""
    stop = asyncio.Event()
    conns = [
        await connect(url, subprotocols=["hopline.v1"], max_size=None)  # type: ignore[list-item]
        for _ in range(sockets)
    ]
    tasks = [asyncio.ensure_future(pipeline(ws, size, stop)) for ws in conns]
    await asyncio.sleep(seconds)
    stop.set()
    for ws in conns:
        await ws.close()
    totals = [await t for t in tasks]
    return {k: sum(t[k] for t in totals) for k in ("sent", "answered")}


def start_service(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RABBITMQ_URL": RABBITMQ_URL}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hopline", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


async def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(3)
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise SystemExit(3)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["pipeline", "stalled", "_attack"])
    parser.add_argument("--url", help="(_attack) the gateway's /ws URL")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=7.0, help="(stalled) s before the attack")
    parser.add_argument("--size", type=int, help="request bytes [pipeline 16 KiB, stalled 64 KiB]")
    parser.add_argument(
        "--stalled-processor", action="store_true", help="(stalled) a processor that never answers"
    )
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra gateway option")
    args = parser.parse_args()
    size = args.size or (16 * 1024 if args.scenario == "pipeline" else 64 * 1024)
    if args.scenario == "_attack":
        print(json.dumps(await attack(args.url, args.sockets, size, args.seconds)))
        return
    queue = f"bench-abuse-{uuid.uuid4().hex[:8]}"
    port = free_port()
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    gw = start_service(
        [
            "gateway",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--input-queue",
            queue,
            *args.gateway_arg,
        ],
        logs / f"{queue}-gateway.log",
    )
    procs = [gw]
    if args.stalled_processor:
        os.environ["HOPLINE_FAULTS_DELAY"] = "3600"
        procs.append(
            start_service(
                [
                    "processor",
                    "--handler",
                    "tests.faults.handlers:slow_echo",
                    "--input-queue",
                    queue,
                ],
                logs / f"{queue}-processor.log",
            )
        )
    elif args.scenario == "pipeline":
        procs.append(
            start_service(
                ["processor", "--handler", "echo", "--input-queue", queue],
                logs / f"{queue}-processor.log",
            )
        )
    url = f"ws://127.0.0.1:{port}/ws"
    result: dict[str, Any] = {"scenario": args.scenario, "size": size}
    try:
        await wait_listening(port, gw)
        # Let the processor's consumer register (batching auto), or with no processor let
        # the gateway notice that nobody consumes (--no-consumer-grace, 5 s by default).
        await asyncio.sleep(
            args.warmup if args.scenario == "stalled" and not args.stalled_processor else 1.0
        )
        sampler, bystander = Sampler(gw.pid), Bystander(url)
        result["rss_start_mib"] = round(rss_mib(gw.pid), 1)
        sampler.start()
        bystander.start()
        sockets = 1 if args.scenario == "pipeline" else args.sockets
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "_attack",
            "--url",
            url,
            "--sockets",
            str(sockets),
            "--size",
            str(size),
            "--seconds",
            str(args.seconds),
            stdout=subprocess.PIPE,
        )
        out, _ = await attacker.communicate()
        totals = json.loads(out)
        attack_end = sampler.samples[-1][0]
        await asyncio.sleep(args.settle)
        await bystander.stop()
        await sampler.stop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        health = (await reader.read()).partition(b"\r\n\r\n")[2]
        writer.close()
        result["health_after"] = json.loads(health)
        result.update(
            attacker_sent=totals["sent"],
            attacker_answered=totals["answered"],
            rss_peak_mib=round(sampler.peak(), 1),
            rss_after_mib=round(sampler.last(), 1),
            rss_peak_after_attack_mib=round(sampler.peak(since=attack_end + args.settle - 1), 1),
            bystander=bystander.summary(),
            rss_timeline_mib=[round(r) for t, r in sampler.samples[::10]],
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        conn = await aio_pika.connect(RABBITMQ_URL)
        async with conn:
            for name in (queue, f"{queue}.batch"):
                channel = await conn.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
