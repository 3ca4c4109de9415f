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

* ``pending``: bytes per pending request. ``--sockets`` sockets each send
  ``--per-socket`` small requests (``hello`` in a ``hopline.v1`` envelope) and hold
  them pending (no processor and ``--no-consumer-grace 0``, so they wait in the
  queue; or with ``--stalled-processor``, which takes batches and never answers);
  the gateway runs with ``--window`` = ``--per-socket`` and no pending cap. Reports
  the resident size once the sockets are open and once every request is pending
  (``/health``), and their difference per pending request. No bystander.

During ``pipeline`` and ``stalled``, a bystander sends ``hello`` every 200 ms on its own socket and
records how long each answer (reply or error) took. The gateway's resident size is
sampled from ``/proc/<pid>/status`` every 100 ms. Prints one JSON object::

    .venv/bin/python bench/abuse_memory.py pipeline --seconds 30 --settle 10
    .venv/bin/python bench/abuse_memory.py stalled --sockets 200 --seconds 20
    .venv/bin/python bench/abuse_memory.py stalled --sockets 200 --seconds 20 --stalled-processor
    .venv/bin/python bench/abuse_memory.py pending --sockets 100 --per-socket 1000

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


async def health(port: int) -> dict[str, Any]:
    """The gateway's ``/health`` answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).partition(b"\r\n\r\n")[2]
    writer.close()
    return dict(json.loads(body))


async def hold_pending(
    url: str, port: int, pid: int, sockets: int, per_socket: int
) -> dict[str, Any]:
    """Open ``sockets`` sockets, send ``per_socket`` requests on each, measure while pending."""
    conns = [
        await connect(url, subprotocols=["hopline.v1"], compression=None)  # type: ignore[list-item]
        for _ in range(sockets)
    ]
    try:
        await asyncio.sleep(2.0)  # let the handshakes' garbage go before the baseline
        rss_open = rss_mib(pid)
        t0 = time.monotonic()
        for i, ws in enumerate(conns):
            for j in range(per_socket):
                await ws.send(json.dumps({"id": j, "data": f"hello {i}"}))
        target = sockets * per_socket
        pending = 0
        while time.monotonic() - t0 < 120:
            pending = (await health(port))["pending_requests"]
            if pending >= target:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # let RSS settle at the plateau
        rss_pending = rss_mib(pid)
        pending = (await health(port))["pending_requests"]
        return {
            "sockets": sockets,
            "pending": pending,
            "rss_open_mib": round(rss_open, 1),
            "rss_pending_mib": round(rss_pending, 1),
            "bytes_per_pending": round((rss_pending - rss_open) * MiB / max(1, pending)),
        }
    finally:
        for ws in conns:  # the gateway reads no close frame while a window is full
            ws.transport.abort()


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


async def under_attack(
    args: argparse.Namespace, pid: int, port: int, url: str, size: int
) -> dict[str, Any]:
    """The ``pipeline`` and ``stalled`` scenarios: attack, bystander, RSS samples."""
    result: dict[str, Any] = {"scenario": args.scenario, "size": size}
    # Let the processor's consumer register (batching auto), or with no processor let
    # the gateway notice that nobody consumes (--no-consumer-grace, 5 s by default).
    await asyncio.sleep(
        args.warmup if args.scenario == "stalled" and not args.stalled_processor else 1.0
    )
    sampler, bystander = Sampler(pid), Bystander(url)
    result["rss_start_mib"] = round(rss_mib(pid), 1)
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
    result["health_after"] = await health(port)
    result.update(
        attacker_sent=totals["sent"],
        attacker_answered=totals["answered"],
        rss_peak_mib=round(sampler.peak(), 1),
        rss_after_mib=round(sampler.last(), 1),
        rss_peak_after_attack_mib=round(sampler.peak(since=attack_end + args.settle - 1), 1),
        bystander=bystander.summary(),
        rss_timeline_mib=[round(r) for t, r in sampler.samples[::10]],
    )
    return result


async def pending(args: argparse.Namespace, pid: int, port: int, url: str) -> dict[str, Any]:
    """The ``pending`` scenario (module docstring)."""
    deadline = time.monotonic() + 15
    while args.stalled_processor and not (await health(port))["batching"]:
        if time.monotonic() > deadline:
            raise SystemExit(3)  # the processor never showed up
        await asyncio.sleep(0.2)
    result: dict[str, Any] = {"scenario": "pending", "stalled_processor": args.stalled_processor}
    result.update(await hold_pending(url, port, pid, args.sockets, args.per_socket))
    result["batching"] = (await health(port))["batching"]
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["pipeline", "stalled", "pending", "_attack"])
    parser.add_argument("--url", help="(_attack) the gateway's /ws URL")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--per-socket", type=int, default=1000, help="(pending) requests each")
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
    if args.scenario == "pending":
        args.gateway_arg = [
            "--window", str(args.per_socket), "--max-pending", "0", "--max-pending-bytes", "0",
            "--no-consumer-grace", "0", "--request-timeout", "600", "--compression", "none",
            "--drain-timeout", "0",
            *args.gateway_arg,
        ]  # fmt: skip
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
    result: dict[str, Any] = {}
    try:
        await wait_listening(port, gw)
        if args.scenario == "pending":
            result = await pending(args, gw.pid, port, url)
        else:
            result = await under_attack(args, gw.pid, port, url, size)
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
