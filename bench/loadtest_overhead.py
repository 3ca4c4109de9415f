"""How fast can ``hopline loadtest`` drive a trivial server, next to a raw websockets loop?

Both clients run in this process on the same event loop implementation (uvloop
when installed, as hopline uses; ``HOPLINE_LOOP=asyncio`` for asyncio's own), one
after the other (alternating, several rounds), against the same in-process echo
server (a ``websockets`` server on its own thread and event loop, no compression,
replies with the frame unchanged and accepts ``hopline.v1``). Same connections,
same in-flight (1), same duration:

* ``raw``: the minimal ``websockets`` asyncio client loop, one task per
  connection doing ``await ws.send(msg); await ws.recv()`` (compression off,
  like the load tester);
* ``loadtest plain``: ``loadtest.runner.run`` with ``--protocol plain --expect echo``
  (every reply verified, latency recorded in the HDR histogram);
* ``loadtest hopline.v1``: the same with JSON envelopes matched by id.

The figure is the ratio of replies per second (median of the rounds); the target
is at least 0.8, so the tool is never the bottleneck of its own measurement. The
client's own CPU per reply (``time.thread_time`` of the client thread; the server
runs on another thread) is reported too: it is steadier than throughput on a
shared machine.

Run: ``.venv/bin/python bench/loadtest_overhead.py [--connections 50] [--seconds 3]
[--rounds 3]``; writes ``bench/results/loadtest_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from hopline.runtime import run as run_loop
from loadtest.config import LoadSettings
from loadtest.runner import run

RESULTS = Path(__file__).resolve().parent / "results" / "loadtest_overhead.json"


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def _select(conn: ServerConnection, offered: list[str]) -> str | None:
    return "hopline.v1" if "hopline.v1" in offered else None


def start_echo_server() -> int:
    """Start the echo server on a daemon thread; return its port."""
    ready = threading.Event()
    box: list[int] = []

    async def main() -> None:
        async with serve(
            _echo, "127.0.0.1", 0, compression=None, select_subprotocol=_select
        ) as server:
            box.append(server.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.Future()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    if not ready.wait(10):
        raise RuntimeError("echo server did not start")
    return box[0]


async def raw_loop(url: str, connections: int, seconds: float) -> tuple[float, int]:
    """Replies/s of the minimal websockets client loop, and the replies counted."""
    sockets = [await connect(url, compression=None) for _ in range(connections)]
    counts = [0] * connections
    end = time.monotonic() + seconds

    async def one(i: int) -> None:
        ws = sockets[i]
        n = 0
        while time.monotonic() < end:
            await ws.send(f"hello {n}")
            await ws.recv()
            n += 1
        counts[i] = n

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(connections)))
    elapsed = time.monotonic() - started
    for ws in sockets:
        await ws.close()
    return sum(counts) / elapsed, sum(counts)


def tool(url: str, connections: int, seconds: float, protocol: str) -> tuple[float, int]:
    """Replies/s the load tester drives (one process, closed loop, in-flight 1), and replies."""
    settings = LoadSettings(
        url=url,
        protocol=protocol,  # type: ignore[arg-type]
        connections=connections,
        procs=1,
        in_flight=1,
        duration=seconds,
        expect="echo",
    )
    result = run(settings)
    c = result.aggregate.counters
    if c["ok"] != c["sent"]:
        raise RuntimeError(f"load tester saw failures: {c}")
    return c["ok"] / result.elapsed, c["ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    port = start_echo_server()
    url = f"ws://127.0.0.1:{port}/ws"
    samples: dict[str, list[float]] = {"raw": [], "plain": [], "hopline.v1": []}
    cpu_us: dict[str, list[float]] = {"raw": [], "plain": [], "hopline.v1": []}
    runs = {
        "raw": lambda: run_loop(raw_loop(url, args.connections, args.seconds)),
        "plain": lambda: tool(url, args.connections, args.seconds, "plain"),
        "hopline.v1": lambda: tool(url, args.connections, args.seconds, "hopline.v1"),
    }
    for _ in range(args.rounds):
        for name, once in runs.items():
            cpu = time.thread_time()
            rate, replies = once()
            cpu_us[name].append((time.thread_time() - cpu) / replies * 1e6)
            samples[name].append(rate)
    median = {name: statistics.median(values) for name, values in samples.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu_us.items()}
    ratio_plain = median["plain"] / median["raw"]
    ratio_v1 = median["hopline.v1"] / median["raw"]

    table = Table(title="hopline loadtest overhead (replies/s against an in-process echo server)")
    for column in ("client", "median req/s", "rounds", "ratio to raw", "client CPU µs/req"):
        table.add_column(column, justify="right" if column != "client" else "left")
    labels = {
        "raw": "raw websockets loop",
        "plain": "loadtest --protocol plain",
        "hopline.v1": "loadtest --protocol hopline.v1",
    }
    for name, label in labels.items():
        table.add_row(
            label,
            f"{median[name]:,.0f}",
            _rounds(samples[name]),
            f"{median[name] / median['raw']:.2f}",
            f"{cpu_median[name]:.1f}",
        )
    Console(width=120).print(table)
    target = 0.8
    verdict = "meets" if min(ratio_plain, ratio_v1) >= target else "MISSES"
    print(f"target >= {target}: {verdict} (plain {ratio_plain:.2f}, hopline.v1 {ratio_v1:.2f})")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "loadtest_overhead",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "connections": args.connections,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "replies_per_s": {name: [round(v, 1) for v in vs] for name, vs in samples.items()},
                "median_replies_per_s": {name: round(v, 1) for name, v in median.items()},
                "client_cpu_us_per_reply": {name: round(v, 1) for name, v in cpu_median.items()},
                "ratio_plain": round(ratio_plain, 3),
                "ratio_hopline_v1": round(ratio_v1, 3),
                "target": target,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


def _rounds(values: list[float]) -> str:
    return " ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
