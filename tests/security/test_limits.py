"""Per-connection and global limits: rate, send deadline, connection cap, handshake deadline.

Each abuse runs next to a bystander client that must keep getting its replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import Stack, http_url, ws_url
from tests.helpers import eventually, http_get
from tests.sample_handlers import Gate
from tests.security.checks import assert_serves
from tests.security.raw import RawClient, http_status


class Counting:
    """Echo handler that counts what reached the processor."""

    def __init__(self) -> None:
        self.handled = 0

    def __call__(self, payload: str | bytes) -> str | bytes:
        self.handled += 1
        return payload


async def test_rate_limit_answers_excess_with_busy_and_publishes_nothing_more(
    stack: Stack,
) -> None:
    """Over --rate-limit, frames get 'busy' (in order) and never reach the processor."""
    gw = await stack.gateway(rate_limit=2, rate_burst=5, rate_grace=0)  # grace: test_abuse.py
    handler = Counting()
    await stack.processor(handler)
    async with connect(ws_url(gw)) as ws:
        for i in range(20):
            await ws.send(f"m{i}")
        replies = [await ws.recv() for _ in range(20)]
        await assert_serves(gw, suffix="")  # another socket has its own bucket
    served = [r for r in replies if not r.startswith("{")]
    busy = [json.loads(r) for r in replies if r.startswith("{")]
    assert 5 <= len(served) <= 6  # the burst, plus at most one token refilled meanwhile
    assert served == [f"m{i}" for i in range(len(served))]  # order kept, busy ones last
    assert {b["error"]["code"] for b in busy} == {"busy"}
    assert handler.handled == len(served) + 2  # + the bystander's two requests
    assert gw.metrics.total("hopline_errors_total", {"code": "busy"}) == len(busy)


async def test_rate_limited_client_is_served_again_once_tokens_refill(stack: Stack) -> None:
    """After a burst is spent, waiting lets the bucket refill and requests pass again."""
    gw = await stack.gateway(rate_limit=20, rate_burst=1)
    await stack.processor()
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        await ws.send(json.dumps({"id": 1, "data": "a"}))
        await ws.send(json.dumps({"id": 2, "data": "b"}))
        replies = {r["id"]: r for r in [json.loads(await ws.recv()) for _ in range(2)]}
        assert replies[1] == {"id": 1, "data": "a world"}
        assert replies[2]["error"]["code"] == "busy"

        async def passes() -> bool:
            await ws.send(json.dumps({"id": 3, "data": "c"}))
            return "data" in json.loads(await ws.recv())

        await eventually(passes, timeout=5, message="a request passing after the refill")


async def test_client_that_stops_reading_is_dropped_after_the_write_timeout(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket that never reads while its large replies pile up is cut; others are served."""
    caplog.set_level(logging.INFO, logger="gateway.server")
    gw = await stack.gateway(write_timeout=1.5)
    await stack.processor("echo")
    abuser = await RawClient.open(gw.port, rcvbuf=4096)
    payload = b"x" * 60_000
    for _ in range(200):  # 12 MB of requests; the echoed replies can't all fit in buffers
        abuser.protocol.send_text(payload)
    for data in abuser.protocol.data_to_send():
        abuser.writer.write(data)  # buffered client-side; never drained, never read back

    def stalled() -> bool:
        return any(t > 0.3 for t in gw.write_stalls())

    await eventually(stalled, timeout=10, message="the gateway blocked on the abuser")
    await assert_serves(gw, suffix="")  # while the abuser stalls its writer
    await eventually(lambda: gw.active_websockets == 0, timeout=5, message="abuser dropped")
    assert any("did not read" in r.getMessage() for r in caplog.records)
    assert gw.connections == 0
    await assert_serves(gw, suffix="")
    abuser.writer.transport.abort()


def huge(payload: str | bytes) -> str | bytes:
    """A 12 MB reply to a 4-byte request."""
    return payload * 3_000_000


async def test_stream_client_that_never_reads_its_reply_is_dropped(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A /stream request whose large reply is never read frees its slot at the send deadline."""
    caplog.set_level(logging.INFO, logger="gateway.server")
    gw = await stack.gateway(write_timeout=1.0)
    await stack.processor(huge)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gw.port))
    await asyncio.get_running_loop().sock_sendall(
        sock, b"GET /stream/abcd HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    await eventually(lambda: any(t > 0.2 for t in gw.write_stalls()), message="reply stalled")
    await eventually(lambda: gw.connections == 0, timeout=5, message="slot released")
    assert any("did not read" in r.getMessage() for r in caplog.records)
    sock.close()


async def test_ping_flood_from_a_client_that_never_reads_is_cut(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Pings whose pongs pile up unread (server memory) get the socket cut at once."""
    caplog.set_level(logging.INFO, logger="gateway.server")
    # The backlog cap acts, not the deadline nor the ping-rate cap (see test_abuse.py).
    gw = await stack.gateway(write_timeout=60, max_ping_rate=0)
    await stack.processor()
    abuser = await RawClient.open(gw.port, rcvbuf=4096)
    for _ in range(100_000):  # ~13 MB of pongs to send back: more than any socket buffer
        abuser.protocol.send_ping(b"p" * 125)
    for data in abuser.protocol.data_to_send():
        abuser.writer.write(data)
    await eventually(lambda: gw.active_websockets == 0, timeout=15, message="flooder cut")
    assert any("control frames" in r.getMessage() for r in caplog.records)
    await assert_serves(gw)
    abuser.writer.transport.abort()


async def test_max_connections_refuses_extra_sockets_with_503(stack: Stack) -> None:
    """Beyond --max-connections the upgrade gets HTTP 503; /health still answers; slots free up."""
    gw = await stack.gateway(max_connections=2)
    await stack.processor()
    async with connect(ws_url(gw)) as first, connect(ws_url(gw)) as second:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(gw)):
                pass
        assert refused.value.response.status_code == 503
        stream = await http_get(http_url(gw, "/stream/hi"))
        assert stream.status == 503  # /stream needs a slot too
        assert (await http_get(http_url(gw, "/health"))).status == 200
        assert (await http_get(http_url(gw, "/metrics"))).status == 200
        await first.send("still")
        assert await first.recv() == "still world"
        await second.send("fine")
        assert await second.recv() == "fine world"
    await eventually(lambda: gw.connections == 0, message="slots released")
    await assert_serves(gw)


async def test_refused_upgrades_do_not_leak_slots(stack: Stack) -> None:
    """Requests that fail the upgrade (bad headers) give their slot back."""
    gw = await stack.gateway(max_connections=1)
    await stack.processor()
    for _ in range(3):
        status, _, _ = await http_status(
            gw.port, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status in (400, 426)
    await eventually(lambda: gw.connections == 0, message="slots released")
    await assert_serves(gw)


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"],
    ids=["silent", "partial-request"],
)
async def test_handshake_that_never_completes_times_out(stack: Stack, partial: bytes) -> None:
    """A connection that never finishes its HTTP request is closed after --handshake-timeout."""
    gw = await stack.gateway(handshake_timeout=0.5)
    await stack.processor()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(partial)
    await writer.drain()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await assert_serves(gw)  # while the slow handshake is pending
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the server, nothing sent
    assert loop.time() - started < 4
    writer.close()


async def test_client_vanishing_with_a_full_window_ends_its_session(stack: Stack) -> None:
    """A client that disconnects while its window is full does not leave a session behind."""
    gw = await stack.gateway(window=2)
    gate = Gate()
    await stack.processor(gate)
    client = await RawClient.open(gw.port)
    for i in range(5):
        client.protocol.send_text(f"wait {i}".encode())
    await client.flush()
    await eventually(lambda: gate.seen == 2, message="window filled")
    client.writer.transport.abort()
    gate.released.set()
    await eventually(lambda: gw.active_websockets == 0, message="session ended")
    await eventually(lambda: gw.broker.pending_requests == 0, message="nothing pending")
