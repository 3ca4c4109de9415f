"""Bare websockets echo server: the WebSocket ceiling of the benchmark.

Same library and event loop as the gateway, nothing else: each text frame is sent
straight back. Run: ``python bench/echo_server.py --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import aioloop
from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came."""
    async for message in ws:
        await ws.send(message)


async def run(host: str, port: int, backlog: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(echo, host, port, compression=None, backlog=backlog) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"echo server listening on ws://{host}:{port}/ws", flush=True)
        await stop.wait()


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--backlog", type=int, default=100, help="listen backlog (asyncio's default: 100)"
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    aioloop.run(run(args.host, args.port, args.backlog))


if __name__ == "__main__":
    main()
