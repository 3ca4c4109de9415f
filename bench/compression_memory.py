"""Gateway memory per socket with and without permessage-deflate negotiated.

``run.py``'s driver offers no extensions, so scenario c. measures sockets without
compression. Browsers and websockets' own client offer permessage-deflate, which
the gateway accepts by default; this script measures what that costs: it starts a
hopline gateway and processor on a unique queue, opens ``--sockets`` connections
with websockets' client (``compression=None``, then ``"deflate"``), and prints the
gateway's VmRSS growth per socket, idle and after one request on each.

Run: ``.venv/bin/python bench/compression_memory.py [--sockets 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import aio_pika
import procs
from websockets.asyncio.client import ClientConnection, connect

PY = sys.executable


async def measure(url: str, pid: int, sockets: int, compression: str | None) -> dict[str, float]:
    """Open ``sockets`` connections, one request each; RSS growth per socket in KiB."""
    base = procs.rss_kib(pid)
    conns: list[ClientConnection] = []
    try:
        for _ in range(sockets):
            conns.append(await connect(url, compression=compression))
        idle = procs.rss_kib(pid)
        for c in conns:
            await c.send("x" * 100)
        for c in conns:
            if await c.recv() != "x" * 100 + " world":
                raise RuntimeError("wrong reply")
        answered = procs.rss_kib(pid)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return {
        "idle_kib_per_socket": round((idle - base) / sockets, 2),
        "after_one_request_kib_per_socket": round((answered - base) / sockets, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    """Start the gateway and processor, measure both modes, clean up."""
    queue = f"bench.compression.{uuid.uuid4().hex[:8]}"
    common = ["--rabbitmq-url", args.rabbitmq_url, "--input-queue", queue]
    started: list[procs.Proc] = []
    with tempfile.TemporaryDirectory(prefix="hopline-bench-") as tmp:
        try:
            gw_argv = [PY, "-m", "hopline", "gateway", "--host", "127.0.0.1", "--port", "0"]
            gw = await procs.start("gateway", [*gw_argv, *common], Path(tmp))
            started.append(gw)
            pr_argv = [PY, "-m", "hopline", "processor", *common]
            started.append(await procs.start("processor", pr_argv, Path(tmp)))
            port = (await gw.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)).group(1)
            url = f"ws://127.0.0.1:{port}/ws"
            async with asyncio.timeout(30):  # until the processor answers
                while True:
                    try:
                        async with connect(url) as ws:
                            await ws.send("ready")
                            if await ws.recv() == "ready world":
                                break
                    except OSError:
                        pass
                    await asyncio.sleep(0.2)
            result: dict[str, object] = {"sockets": args.sockets}
            for compression in (None, "deflate"):
                result[compression or "none"] = await measure(
                    url, gw.pid, args.sockets, compression
                )
            return result
        finally:
            await asyncio.gather(*(p.stop() for p in started))
            conn = await aio_pika.connect(args.rabbitmq_url)
            async with conn:
                channel = await conn.channel()
                for name in (queue, f"{queue}.batch"):
                    await channel.queue_delete(name)


def main() -> None:
    """Parse arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
