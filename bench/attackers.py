"""The attackers of ``bench/abuse.py``, each run in a process of its own.

Usage (started by ``abuse.py``; prints one JSON line with the attacker's outcome)::

    .venv/bin/python bench/attackers.py KIND --port N --duration S

Kinds: ``ping`` / ``hello`` (one socket writes pings or pipelines ``hello`` as fast as
it can, reading what comes back; when the gateway closes it, another one opens),
``subprotocol`` (4 workers sending a 1 MB ``Sec-WebSocket-Protocol`` list over and
over) and ``slow`` (50 sockets pipelining 200 x 16 KiB requests, then reading their
replies at ~5 KiB/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time

from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["KINDS", "attacker"]

KINDS = ("ping", "hello", "subprotocol", "slow")


async def _open_raw(
    port: int, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ClientProtocol]:
    """An open WebSocket on ``port`` driven by hand; ``rcvbuf`` shrinks the receive buffer."""
    if rcvbuf is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"), max_size=None)
    protocol.send_request(protocol.connect())
    for data in protocol.data_to_send():
        writer.write(data)
    while not any(isinstance(e, Response) for e in protocol.events_received()):
        protocol.receive_data(await reader.read(65536))
    return reader, writer, protocol


async def _flood_once(port: int, deadline: float, kind: str) -> tuple[int, int, int | None]:
    reader, writer, protocol = await _open_raw(port)
    sent = received = 0

    async def read() -> None:
        nonlocal received
        while protocol.state is not State.CLOSED:
            data = await reader.read(65536)
            if not data:
                protocol.receive_eof()
                break
            protocol.receive_data(data)
            received += len(protocol.events_received())
            for data in protocol.data_to_send():  # answer the close frame
                if data:
                    writer.write(data)

    reading = asyncio.get_running_loop().create_task(read())
    with contextlib.suppress(ConnectionError, RuntimeError):
        while time.monotonic() < deadline and not reading.done():
            if protocol.state is not State.OPEN:
                break
            for _ in range(500):
                if kind == "ping":
                    protocol.send_ping(b"")
                else:
                    protocol.send_text(b"hello")
            sent += 500
            for data in protocol.data_to_send():
                if data:
                    writer.write(data)
            await writer.drain()
            await asyncio.sleep(0)  # let the reader read the replies back
    if not reading.done():  # closed by the server: read until its close frame / EOF
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(reading)
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
        await reading
    writer.transport.abort()
    return sent, received, protocol.close_code


async def _flood(port: int, duration: float, kind: str) -> dict[str, object]:
    """Flood from one socket; when the gateway closes it, open another (for ``duration``)."""
    deadline = time.monotonic() + duration
    sent = received = sockets = 0
    codes: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            s, r, code = await _flood_once(port, deadline, kind)
        except (ConnectionError, OSError):
            await asyncio.sleep(0.01)
            continue
        sockets += 1
        sent, received = sent + s, received + r
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {"sockets": sockets, "frames_sent": sent, "frames_received": received, "close": codes}


async def _subprotocol(port: int, duration: float) -> dict[str, object]:
    line = b"Sec-WebSocket-Protocol: " + b",".join([b"p"] * 4000) + b"\r\n"
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    request = head + line * 128 + b"\r\n"
    deadline = time.monotonic() + duration
    statuses: dict[str, int] = {}

    async def worker() -> None:
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with contextlib.suppress(ConnectionError):
                writer.write(request)
                await writer.drain()
            answer = b""
            with contextlib.suppress(ConnectionError):
                answer = await reader.read(200)
            status = answer.split(b" ", 2)[1].decode() if answer.count(b" ") >= 2 else "none"
            statuses[status] = statuses.get(status, 0) + 1
            writer.transport.abort()

    await asyncio.gather(*(worker() for _ in range(4)))
    return {"statuses": statuses, "attempts": sum(statuses.values())}


async def _slow_readers(port: int, duration: float, count: int = 50) -> dict[str, object]:
    """``count`` sockets each pipelining 200 x 16 KiB requests, then reading ~5 KiB/s."""
    deadline = time.monotonic() + duration
    cut = 0

    async def one() -> None:
        nonlocal cut
        reader, writer, protocol = await _open_raw(port, rcvbuf=4096)
        for _ in range(200):
            protocol.send_text(b"x" * 16384)
        for data in protocol.data_to_send():
            writer.write(data)  # left for the transport to push as the gateway reads
        with contextlib.suppress(ConnectionError):
            while time.monotonic() < deadline:
                data = await reader.read(512)
                if not data:
                    cut += 1
                    break
                await asyncio.sleep(0.1)  # ~5 KiB/s
        writer.transport.abort()

    await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    return {"sockets": count, "cut_by_gateway": cut}


async def attacker(kind: str, port: int, duration: float) -> None:
    """Run attack ``kind`` on ``port`` for ``duration`` s; print its outcome as one JSON line."""
    if kind == "slow":
        print(json.dumps(await _slow_readers(port, duration)), flush=True)
        return
    if kind in ("ping", "hello"):
        result = await _flood(port, duration, kind)
    else:
        result = await _subprotocol(port, duration)
    print(json.dumps(result), flush=True)


def main() -> None:
    """Parse the command line and run one attacker."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    asyncio.run(attacker(args.kind, args.port, args.duration))


if __name__ == "__main__":
    main()
