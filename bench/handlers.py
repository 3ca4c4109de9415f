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
* ``slow-async`` / ``slow-sync`` (only with ``--scenario``, 60+ s each): issue 15's row,
  2 requests/s whose handler takes 60 s, a 30 s request timeout, default concurrency
  (64 slots), and a bystander sending ``hello`` every 200 ms: its replies, errors and
  latency (issue 15 reported every client starved 38 s before deadlines reached the
  handler).

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


async def stack(
    handler: str, log_dir: Path, gateway_args: tuple[str, ...] = ()
) -> tuple[str, list[procs.Proc], str]:
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
        [*py, "gateway", *common, "--host", "127.0.0.1", "--port", str(port), *gateway_args],
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


async def slow_and_bystander(url: str, duration: float) -> dict:
    """Issue 15: 2 requests/s that take 60 s (30 s deadline) and a bystander every 200 ms."""
    bystander: list[float] = []
    errors: dict[str, int] = {}
    slow_outcomes: dict[str, int] = {}
    stop = time.perf_counter() + duration

    async def slow(client: hopline.Client) -> None:
        pending = []
        while time.perf_counter() < stop:
            pending.append(await client.submit("slow"))
            await asyncio.sleep(0.5)
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            key = getattr(outcome, "code", None) or "reply"
            slow_outcomes[str(key)] = slow_outcomes.get(str(key), 0) + 1

    async def watch(client: hopline.Client) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                await client.request("hello")
                bystander.append(time.perf_counter() - t0)
            except hopline.RequestError as exc:
                errors[str(exc.code)] = errors.get(str(exc.code), 0) + 1
            await asyncio.sleep(max(0.0, 0.2 - (time.perf_counter() - t0)))

    async with hopline.connect(url, timeout=None) as a, hopline.connect(url) as b:
        await asyncio.gather(slow(a), watch(b))
    return {
        "slow_outcomes": slow_outcomes,
        "bystander_replies": len(bystander),
        "bystander_errors": errors,
        "bystander_p50_ms": round(pct(bystander, 0.5), 2),
        "bystander_p99_ms": round(pct(bystander, 0.99), 2),
        "bystander_max_ms": round(max(bystander, default=0.0) * 1000, 2),
    }


async def scenario(
    name: str, handler: str, log_dir: Path, run: Any, gateway_args: tuple[str, ...] = ()
) -> dict:
    url, started, queue = await stack(handler, log_dir, gateway_args)
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
        slow_run = max(d, 60.0)  # at least the handler's 60 s: slots fill up after 30 s
        slow_plan = [
            ("slow-async", "bench_handlers:slow60", lambda url: slow_and_bystander(url, slow_run)),
            (
                "slow-sync",
                "bench_handlers:slow60_sync",
                lambda url: slow_and_bystander(url, slow_run),
            ),
        ]
        try:
            for name, handler, run in plan:
                if not args.scenario or name in args.scenario:
                    results.append(await scenario(name, handler, log_dir, run))
            for name, handler, run in slow_plan:  # 60+ s each: only when asked for
                if args.scenario and name in args.scenario:
                    results.append(
                        await scenario(name, handler, log_dir, run, ("--request-timeout", "30"))
                    )
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
