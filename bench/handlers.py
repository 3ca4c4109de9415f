"""Handler benchmarks (issue 12): a blocking handler's throughput, and streamed replies.

Starts a gateway and a processor (``python -m hopline``) on free ports against the
broker at ``RABBITMQ_URL``, drives them with the public client from this process,
prints one line per scenario and (with ``--json``) writes the figures. Usage::

    .venv/bin/python bench/handlers.py [--duration 10] [--json out.json]

Scenarios:

* ``blocking``: default ``--concurrency``, a plain handler that sleeps 100 ms, 50
  concurrent clients in a closed loop: replies/s (issue 12's target: >= 400).
* ``stream-burst``: 20 clients in a closed loop streaming 100-chunk replies as fast as
  the generator yields: chunks/s, time to first and last chunk.
* ``stream-paced`` vs ``joined-paced``: 20 chunks produced 20 ms apart, streamed to a
  ``hopline.v1`` client vs the same reply joined for a plain-mode client: time to the
  first chunk against the non-streamed round trip.

Exit code 0, or 3 when something could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import procs  # noqa: E402

import hopline  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` in ms (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def stack(handler: str, log_dir: Path) -> tuple[str, list[procs.Proc], str]:
    """A gateway and one processor with ``handler`` on a fresh queue; (ws url, procs, queue)."""
    queue = f"bench-handlers-{uuid.uuid4().hex[:8]}"
    port = procs.free_port()
    env = {"PYTHONPATH": f"{BENCH}{os.pathsep}{BENCH.parent}", "HOPLINE_LOOP": "uvloop"}
    common = ["--rabbitmq-url", RABBITMQ_URL, "--input-queue", queue]
    py = [sys.executable, "-m", "hopline", "-v"]
    proc = await procs.start(
        f"processor-{queue}", [*py, "processor", *common, "--handler", handler], log_dir, env=env
    )
    await proc.wait_log("consuming", 30)
    gw = await procs.start(
        f"gateway-{queue}",
        [*py, "gateway", *common, "--host", "127.0.0.1", "--port", str(port)],
        log_dir,
        env=env,
    )
    await gw.wait_log("listening on", 30)
    url = f"ws://127.0.0.1:{port}/ws"
    await wait_batching(url)
    return url, [gw, proc], queue


async def wait_batching(url: str) -> None:
    """Wait until the gateway reports batching active (it has seen the processor)."""
    import urllib.request

    health = url.replace("ws://", "http://").replace("/ws", "/health")
    for _ in range(100):
        try:
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(health, timeout=2).read())
            if json.loads(body).get("batching"):
                return
        except Exception:
            pass
        await asyncio.sleep(0.1)


WARMUP = 1.0  # seconds of each scenario not measured (connections opening, threads starting)


async def closed_loop(url: str, clients: int, duration: float, plain: bool = False) -> dict:
    """``clients`` connections, one request in flight each: replies completed in the window."""
    latencies: list[float] = []
    begin = time.perf_counter() + WARMUP
    stop = begin + duration

    async def one(i: int) -> None:
        async with hopline.connect(url, plain=plain) as client:
            n = 0
            while True:
                t0 = time.perf_counter()
                await client.request(f"c{i}-{n}")
                t1 = time.perf_counter()
                if t1 > stop:
                    return
                if t0 >= begin:
                    latencies.append(t1 - t0)
                n += 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    elapsed = duration
    return {
        "replies": len(latencies),
        "replies_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
    }


async def streams(url: str, clients: int, duration: float) -> dict:
    """Closed loop of streamed requests: chunks/s, time to first and last chunk."""
    first: list[float] = []
    last: list[float] = []
    chunks = 0
    begin = time.perf_counter() + WARMUP
    stop = begin + duration

    async def one(i: int) -> None:
        nonlocal chunks
        async with hopline.connect(url) as client:
            while True:
                t0 = time.perf_counter()
                seen = 0
                ttfc = 0.0
                async for _ in client.stream(f"s{i}"):
                    if seen == 0:
                        ttfc = time.perf_counter() - t0
                    seen += 1
                t1 = time.perf_counter()
                if t1 > stop:
                    return
                if t0 >= begin:
                    first.append(ttfc)
                    last.append(t1 - t0)
                    chunks += seen

    await asyncio.gather(*(one(i) for i in range(clients)))
    elapsed = duration
    return {
        "streams": len(last),
        "chunks": chunks,
        "chunks_per_stream": round(chunks / max(len(last), 1), 1),
        "chunks_per_s": round(chunks / elapsed),
        "ttfc_p50_ms": round(pct(first, 0.5), 2),
        "ttfc_p99_ms": round(pct(first, 0.99), 2),
        "ttlc_p50_ms": round(pct(last, 0.5), 2),
        "ttlc_p99_ms": round(pct(last, 0.99), 2),
    }


async def delete_queues(queue: str) -> None:
    """Delete the scenario's queues (they are durable: the broker is shared)."""
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        for name in (queue, f"{queue}.batch"):
            channel = await conn.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)


async def scenario(name: str, handler: str, log_dir: Path, run: Any) -> dict:
    url, started, queue = await stack(handler, log_dir)
    try:
        result = await run(url)
    finally:
        for p in started:
            await p.stop()
        await delete_queues(queue)
    result = {"scenario": name, "handler": handler, **result}
    print(json.dumps(result), flush=True)
    return result


async def main(args: argparse.Namespace) -> int:
    d = args.duration
    results = []
    with tempfile.TemporaryDirectory(prefix="hopline-bench-handlers-") as tmp:
        log_dir = Path(tmp)
        plan = [
            ("blocking", "bench_handlers:sleep100", lambda url: closed_loop(url, 50, d)),
            ("stream-burst", "bench_handlers:burst100", lambda url: streams(url, 20, d)),
            ("stream-paced", "bench_handlers:paced20", lambda url: streams(url, 10, d)),
            (
                "joined-paced",
                "bench_handlers:paced20",
                lambda url: closed_loop(url, 10, d, plain=True),
            ),
        ]
        try:
            for name, handler, run in plan:
                if not args.scenario or name in args.scenario:
                    results.append(await scenario(name, handler, log_dir, run))
        except RuntimeError as exc:
            print(f"bench/handlers.py: could not start: {exc}", file=sys.stderr)
            return 3
    out = {"load_average_at_end": os.getloadavg(), "results": results}
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--scenario", action="append", help="run only this scenario (repeatable; default: all)"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
