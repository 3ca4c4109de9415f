"""Bare websockets echo server: the WebSocket ceiling of the benchmark.

Same library and event loop as the gateway, nothing else: each text frame is sent
straight back. Run: ``python bench/echo_server.py --port N``.

``--direct`` answers each frame from the connection's ``process_event`` hook
(called in ``data_received``) instead of through ``recv()``/``send()``: no
message queue, no task switch and no send lock per frame. It is not a ceiling
of the benchmark; it measures what that read/write path would save the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import aioloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came."""
    async for message in ws:
        await ws.send(message)


class DirectEcho(ServerConnection):
    """Echo each complete data frame from ``process_event``, in ``data_received``."""

    def process_event(self, event: Event) -> None:
        if (
            self.request is not None
            and isinstance(event, Frame)
            and event.fin
            and event.opcode in (Opcode.TEXT, Opcode.BINARY)
            and self.protocol.state is State.OPEN
        ):
            if event.opcode is Opcode.TEXT:
                self.protocol.send_text(event.data)
            else:
                self.protocol.send_binary(event.data)
            self.send_data()
            return
        super().process_event(event)


async def hold(ws: ServerConnection) -> None:
    """Keep the connection open until the client closes it (DirectEcho answers)."""
    await ws.wait_closed()


async def run(host: str, port: int, backlog: int, direct: bool) -> None:
    """Serve until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    handler, factory = (hold, DirectEcho) if direct else (echo, ServerConnection)
    async with serve(
        handler, host, port, compression=None, backlog=backlog, create_connection=factory
    ) as server:
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
    parser.add_argument("--direct", action="store_true", help="answer from process_event")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    aioloop.run(run(args.host, args.port, args.backlog, args.direct))


if __name__ == "__main__":
    main()
