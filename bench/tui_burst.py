"""The TUI's own cost: a burst through ``hopline tui`` against the same burst from a bare client.

One run, one machine: a gateway and a processor run as subprocesses on a free
port and a unique queue; this process alternates, ``--rounds`` times, a bare
``hopline.v1`` client (send N envelopes, read N replies) and the TUI running
headless (``App.run_test``, 80x24), pressing ctrl+b with ``--burst N`` and waiting
until the burst entry shows every reply. Reported: the median time of each and
their ratio (TUI / bare), i.e. what the UI side adds to a burst.

    .venv/bin/python bench/tui_burst.py --burst 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hopline.broker_node import free_port, port_answers  # noqa: E402
from tui.app import HoplineApp  # noqa: E402
from tui.config import TuiSettings  # noqa: E402

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def bare_burst(url: str, n: int) -> float:
    """Seconds to send ``n`` envelopes at once and read every reply."""
    async with connect(url, subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
        started = time.perf_counter()
        for i in range(n):
            await ws.send(json.dumps({"id": i, "data": "hello"}))
        for _ in range(n):
            reply = json.loads(await ws.recv())
            assert reply.get("data") == "hello world", reply
        return time.perf_counter() - started


async def tui_burst(url: str, n: int) -> float:
    """Seconds from ctrl+b until the TUI's burst entry holds every reply."""
    app = HoplineApp(TuiSettings(url=url, burst=n))
    async with app.run_test(size=(80, 24)) as pilot:
        while not app.client.connected:  # noqa: ASYNC110 - polling app state is the point
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await pilot.press("ctrl+b")
        burst = app.conversation.entries[-1]
        while not burst.done:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await pilot.pause()  # the last re-render
        elapsed = time.perf_counter() - started
        assert burst.ok == n, f"{burst.ok} ok of {n}: {burst.errors}"  # type: ignore[union-attr]
        return elapsed


async def main(burst: int, rounds: int) -> None:
    queue = f"bench-tui-{uuid.uuid4().hex[:8]}"
    port = free_port()
    hopline = [sys.executable, "-m", "hopline"]
    common = ["--rabbitmq-url", RABBITMQ_URL, "--input-queue", queue]
    gateway = [*hopline, "gateway", "--host", "127.0.0.1", "--port", str(port), *common]
    procs = [
        subprocess.Popen(gateway),  # noqa: ASYNC220 - starts at once, before any await
        subprocess.Popen([*hopline, "processor", *common]),  # noqa: ASYNC220
    ]
    try:
        deadline = time.monotonic() + 20
        while not port_answers("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise SystemExit("gateway did not start")
            await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/ws"
        await bare_burst(url, burst)  # warm-up: batching active, connections hot
        bare, tui = [], []
        for _ in range(rounds):
            bare.append(await bare_burst(url, burst))
            tui.append(await tui_burst(url, burst))
        b, t = statistics.median(bare), statistics.median(tui)
        print(f"burst {burst}, {rounds} rounds (medians)")
        print(f"  bare hopline.v1 client: {b * 1000:8.1f} ms  ({burst / b:,.0f} replies/s)")
        print(f"  hopline tui:            {t * 1000:8.1f} ms  ({burst / t:,.0f} replies/s)")
        print(f"  ratio tui / bare:       {t / b:8.2f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        conn = await aio_pika.connect(RABBITMQ_URL)
        async with conn:
            for name in (queue, f"{queue}.batch", f"{queue}.dead"):
                channel = await conn.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.burst, args.rounds))
