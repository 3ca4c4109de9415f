"""Issue 15, connection side: one client must not hurt the others (docs/hardening.md).

Each attack runs next to a bystander that sends ``hello`` every 200 ms on its own
socket and must get an answer to every request. Figures are bounds (memory,
descriptors, answers), never wall-clock times; the sizes are modest for CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from gateway.session import RATE_LIMITED
from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, http_url, ws_url
from tests.helpers import eventually, http_get
from tests.sample_handlers import Gate
from tests.security.abuse import Bystander, gateway_process
from tests.security.checks import assert_serves
from tests.security.raw import RawClient, http_status

HARDENED = {"rate_limit": 20, "rate_burst": 20, "max_connections": 1000}


async def open_from(port: int, source: str, payload: bytes = b"") -> socket.socket:
    """A TCP connection to the gateway from ``source`` (any 127.x address), ``payload`` sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if payload:
        await loop.sock_sendall(sock, payload)
    return sock


async def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """What the server sends until it closes (or ``timeout``)."""
    loop = asyncio.get_running_loop()
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            while chunk := await loop.sock_recv(sock, 65536):
                data += chunk
    return data


# Idle sockets


async def test_idle_socket_is_closed_with_a_reason_and_busy_ones_stay(stack: Stack) -> None:
    """No request for --idle-timeout: closed 1000 'idle timeout'; pings do not keep it open."""
    gw = await stack.gateway(idle_timeout=0.6)
    await stack.processor()
    async with (
        connect(ws_url(gw), ping_interval=None) as idle,
        connect(ws_url(gw), ping_interval=0.1, ping_timeout=5) as pinging,
        connect(ws_url(gw)) as busy,
    ):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0  # over three idle timeouts
        while loop.time() < deadline:
            await busy.send("still here")
            assert await busy.recv() == "still here world"
            await asyncio.sleep(0.2)
        for ws in (idle, pinging):
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    await ws.recv()
            assert ws.close_code == 1000 and ws.close_reason == "idle timeout"
        await busy.send("and now")
        assert await busy.recv() == "and now world"


# Handshakes


async def test_partial_handshakes_cannot_exhaust_descriptors(
    rabbitmq_url: str, topology: QueueTopology, stack: Stack
) -> None:
    """Handshakes in progress count toward --max-connections: with an fd limit of 300 and
    400 partial handshakes, the gateway stays under it, refuses the excess with 503 at
    once, and serves its open sockets."""
    await stack.processor()
    args = ("--max-connections", "100", "--handshake-timeout", "60")
    async with gateway_process(rabbitmq_url, topology, *args, nofile=300) as gw:
        async with Bystander(gw.port) as bystander:
            partial = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            attackers = [await open_from(gw.port, "127.0.0.2", partial) for _ in range(400)]
            gw.sample()
            answers = await asyncio.gather(*(read_all(s, timeout=1.0) for s in attackers))
            gw.sample()
            await bystander.served(2)  # the bystander keeps sending meanwhile
        bystander.assert_served(at_least=2)
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert len(refused) >= 400 - 100 - 16  # the cap plus the monitoring reserve
        assert gw.peak_fds < 250, gw.peak_fds
        for s in attackers:
            s.close()
        await eventually(lambda: _health(gw.port), message="slots returned")


async def _health(port: int) -> bool:
    with contextlib.suppress(OSError):
        return (await http_get(f"http://127.0.0.1:{port}/health", timeout=2)).status == 200
    return False


async def test_per_address_cap_refuses_one_address_and_not_others(stack: Stack) -> None:
    """--max-connections-per-address counts handshakes too; other addresses still connect."""
    gw = await stack.gateway(max_connections_per_address=3, handshake_timeout=30)
    await stack.processor()
    held = [await open_from(gw.port, "127.0.0.3", b"GET /ws HTTP/1.1\r\n") for _ in range(3)]
    refused = await open_from(gw.port, "127.0.0.3", b"GET /ws HTTP/1.1\r\n")
    assert (await read_all(refused)).startswith(b"HTTP/1.1 429")
    await assert_serves(gw)  # from 127.0.0.1
    for s in [*held, refused]:
        s.close()
    await eventually(lambda: gw.tcp_connections == 0, message="connections released")


async def test_huge_subprotocol_header_is_refused_without_parsing(stack: Stack) -> None:
    """A 1 MB Sec-WebSocket-Protocol list (128 lines of 8 KB) gets 431 after 16 KiB."""
    gw = await stack.gateway()
    await stack.processor()
    line = b"Sec-WebSocket-Protocol: " + b",".join([b"p"] * 4000) + b"\r\n"
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    async with Bystander(gw.port) as bystander:
        for _ in range(3):
            sock = await open_from(gw.port, "127.0.0.1")
            with contextlib.suppress(ConnectionError):
                await asyncio.get_running_loop().sock_sendall(sock, head + line * 128)
            answer = await read_all(sock)
            sock.close()
            assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        await bystander.served(2)
    bystander.assert_served(at_least=2)


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([("Sec-WebSocket-Protocol", ",".join(f"p{i}" for i in range(17)))], 400),
        ([(f"X-Filler-{i}", "x") for i in range(70)], 431),
    ],
    ids=["17-subprotocols", "70-headers"],
)
async def test_header_count_limits(stack: Stack, extra: list[tuple[str, str]], status: int) -> None:
    """Too many headers (431) or subprotocol entries (400) are refused before the upgrade."""
    gw = await stack.gateway()
    await stack.processor()
    lines = "".join(f"{name}: {value}\r\n" for name, value in extra)
    request = (
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{lines}\r\n"
    )
    got, _, _ = await http_status(gw.port, request.encode())
    assert got == status
    await assert_serves(gw)


async def test_handshake_headers_are_not_kept_for_the_socket_life(stack: Stack) -> None:
    """Once open, a socket keeps its request path, not its (up to 16 KiB of) headers."""
    gw = await stack.gateway()
    await stack.processor()
    filler = [(f"X-Filler-{i}", "y" * 200) for i in range(40)]
    async with connect(ws_url(gw), additional_headers=filler) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi world"
        (session,) = gw.sessions
        assert session.ws.request is not None
        assert session.ws.request.path == "/ws"
        assert len(session.ws.request.headers) == 0


# Fair loop


async def test_ping_flood_is_closed_with_1008(stack: Stack) -> None:
    """A socket sending pings faster than --max-ping-rate (pongs read back) gets 1008."""
    gw = await stack.gateway()
    await stack.processor()
    async with Bystander(gw.port) as bystander:
        abuser = await RawClient.open(gw.port)
        for _ in range(50_000):
            abuser.protocol.send_ping(b"")
        await abuser.flush()
        assert await abuser.closed(timeout=10) == 1008
        assert abuser.protocol.close_rcvd is not None
        assert abuser.protocol.close_rcvd.reason == "too many pings"
        await bystander.served(2)
    bystander.assert_served(at_least=2)


async def test_pings_spend_rate_limit_tokens(stack: Stack) -> None:
    """With --rate-limit, pings count like requests: a ping-only flood ends in 1008."""
    gw = await stack.gateway(rate_limit=2, rate_burst=2, rate_grace=1, max_ping_rate=0)
    await stack.processor()
    abuser = await RawClient.open(gw.port)
    for _ in range(200):
        abuser.protocol.send_ping(b"")
    await abuser.flush()
    assert await abuser.closed(timeout=10) == 1008
    assert abuser.protocol.close_rcvd is not None
    assert abuser.protocol.close_rcvd.reason == RATE_LIMITED
    await assert_serves(gw)


async def test_hello_flood_is_closed_after_a_bounded_number_of_busy(stack: Stack) -> None:
    """Hardened limits: a flood gets at most rate x grace 'busy' answers, then 1008."""
    gw = await stack.gateway(**HARDENED, rate_grace=5)
    await stack.processor()
    async with Bystander(gw.port) as bystander:
        abuser = await RawClient.open(gw.port)
        for _ in range(20_000):
            abuser.protocol.send_text(b"hello")
        with contextlib.suppress(ConnectionError):
            await abuser.flush()
        replies = busy = 0
        with contextlib.suppress(ConnectionError):
            while True:
                frame = await abuser.frame(timeout=10)
                if frame.opcode is Opcode.CLOSE:
                    break
                if frame.data.startswith(b"{"):
                    busy += 1
                else:
                    replies += 1
        assert await abuser.closed(timeout=10) == 1008
        assert busy <= 20 * 5 + 1  # rate x grace, then the close
        assert replies <= 20 + 20 * 2  # the burst plus what refilled meanwhile
        await bystander.served(2)
    bystander.assert_served(at_least=2)
    # Plain mode: 'busy' answers queued behind pending replies are dropped at the close.
    assert busy <= gw.metrics.total("hopline_errors_total", {"code": "busy"}) <= 20 * 5 + 1


async def test_stream_is_rate_limited_per_address(stack: Stack) -> None:
    """/stream takes tokens from a per-address bucket: excess requests get 429 'busy'."""
    gw = await stack.gateway(rate_limit=5, rate_burst=5)
    await stack.processor()
    statuses = []
    for i in range(30):
        response = await http_get(http_url(gw, f"/stream/m{i}"))
        statuses.append(response.status)
        if response.status == 429:
            assert json.loads(response.body)["error"]["code"] == "busy"
    assert statuses.count(200) <= 5 + 3  # the burst plus what refilled meanwhile
    assert statuses.count(429) >= 20
    await assert_serves(gw)  # a socket has its own bucket


# Slow readers and bytes in flight


def amplify(payload: str | bytes) -> str | bytes:
    """A reply 8 times the request."""
    return payload * 8


async def test_slow_reader_is_closed_when_its_send_queue_is_full(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Replies piling up for a client that does not read close it (1008) long before
    --write-timeout; others are served."""
    caplog.set_level(logging.INFO, logger="gateway.session")
    gw = await stack.gateway(max_send_queue=256 * 1024, write_timeout=600)
    await stack.processor(amplify)
    async with Bystander(gw.port) as bystander:
        readers = [await RawClient.open(gw.port, rcvbuf=4096) for _ in range(5)]
        for reader in readers:
            for _ in range(200):  # 12.5 MiB of replies: more than socket buffers hold
                reader.protocol.send_text(b"x" * 8192)  # 64 KiB replies
            for data in reader.protocol.data_to_send():
                reader.writer.write(data)  # never read back
        await eventually(lambda: gw.active_websockets == 1, timeout=30, message="readers cut")
    bystander.assert_served(at_least=1)
    assert sum("send queue full" in r.getMessage() for r in caplog.records) == 5
    for reader in readers:
        reader.writer.transport.abort()


async def test_in_flight_bytes_cap_stops_reading_the_socket(stack: Stack) -> None:
    """--max-in-flight-bytes: like the window, the gateway stops reading at the cap."""
    gw = await stack.gateway(max_in_flight_bytes=64 * 1024, window=128)
    gate = Gate()
    await stack.processor(gate)
    async with connect(ws_url(gw)) as ws:
        for i in range(20):
            await ws.send(f"wait {i} " + "x" * 16_000)
        await eventually(lambda: gate.seen >= 4, message="the first requests arrived")
        await asyncio.sleep(0.3)  # give any over-read request time to show up
        assert gate.seen <= 5  # 64 KiB / 16 KB, plus the one read before the check
        async with connect(ws_url(gw)) as other:
            await other.send("release")
            assert await other.recv() == "release done"
        replies = [await ws.recv() for _ in range(20)]
    assert [r.split()[1] for r in replies] == [str(i) for i in range(20)]


# Shutdown


async def test_stop_answers_every_pending_request_before_closing(stack: Stack) -> None:
    """Requests still pending at the drain deadline get an error frame, then 1001."""
    gw = await stack.gateway(drain_timeout=0.5)
    gate = Gate()
    await stack.processor(gate)
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        for i in range(50):
            await ws.send(json.dumps({"id": i, "data": "wait"}))
        await eventually(lambda: gate.seen >= 1, message="requests reached the processor")
        stopping = asyncio.get_running_loop().create_task(gw.stop())
        answers = [json.loads(await ws.recv()) for _ in range(50)]
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1001
        await stopping
    assert sorted(a["id"] for a in answers) == list(range(50))
    assert {a["error"]["code"] for a in answers} == {"unavailable"}
    gate.released.set()
    stack.gateways.remove(gw)


async def test_refused_at_accept_is_a_503_not_a_hang(stack: Stack) -> None:
    """Past --max-connections plus the reserve, a new connection gets 503 at once."""
    gw = await stack.gateway(max_connections=1, handshake_timeout=30)
    await stack.processor()
    held = [await open_from(gw.port, "127.0.0.4") for _ in range(1 + 16)]
    await eventually(lambda: gw.tcp_connections == 17, message="connections accepted")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gw)):
            pass
    assert refused.value.response.status_code == 503
    for s in held:
        s.close()
    await eventually(lambda: gw.tcp_connections == 0, message="connections released")
    await assert_serves(gw)
