"""Property-based abuse: random envelopes, frames and bytes thrown at one live gateway.

One gateway (echo processor) serves every example of a test, so damage would
accumulate. After each example a bystander socket must still be served and /health
must answer 200; at the end no ERROR record may have been logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from gateway.security import normalize_origin
from gateway.server import Gateway
from tests.conftest import Stack, http_url, ws_url
from tests.helpers import http_get
from tests.security.raw import RawClient, frame_bytes

FUZZ = settings(
    max_examples=40,
    deadline=None,  # a live network round trip per example; the per-test timeout bounds it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMIT = 4096  # a small size limit, so the fuzzer also reaches it


@dataclass
class Live:
    gw: Gateway
    bystander: ClientConnection
    caplog: pytest.LogCaptureFixture
    count: int = 0

    async def still_healthy(self) -> None:
        """The bystander is answered and /health says healthy."""
        self.count += 1
        await self.bystander.send(f"ping {self.count}")
        assert await self.bystander.recv() == f"ping {self.count}"
        assert (await http_get(http_url(self.gw, "/health"))).status == 200


@pytest.fixture
async def live(stack: Stack, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Live]:
    caplog.set_level(logging.WARNING)
    gw = await stack.gateway(max_message_size=LIMIT, request_timeout=5.0)
    await stack.processor("echo")
    async with connect(ws_url(gw)) as bystander:
        yield Live(gw, bystander, caplog)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def guarded(stack: Stack, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Live]:
    """Like ``live``, with authentication and an origin allow-list switched on."""
    caplog.set_level(logging.WARNING)
    gw = await stack.gateway(
        token_secret=SECRET, allowed_origins=frozenset({"https://app.example"})
    )
    await stack.processor("echo")
    headers = {"Authorization": f"Bearer {_token()}"}
    async with connect(ws_url(gw), additional_headers=headers) as bystander:
        yield Live(gw, bystander, caplog)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


SECRET = "fuzzing-secret-that-is-long-enough-for-hs256"


def _token(**claims: object) -> str:
    return jwt.encode({"exp": int(time.time()) + 300, **claims}, SECRET, "HS256")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
envelope_like = st.one_of(
    st.fixed_dictionaries({"id": st.integers() | st.text(max_size=10), "data": st.text()}),
    st.dictionaries(st.sampled_from(["id", "data", "error", "x"]), json_values, max_size=4),
    json_values,
).map(lambda obj: json.dumps(obj, allow_nan=False))
v1_frames = st.one_of(envelope_like, st.text(max_size=200), st.binary(max_size=200))


@FUZZ
@given(frames=st.lists(v1_frames, min_size=1, max_size=6))
async def test_random_envelopes_each_get_exactly_one_answer(live: Live, frames: list) -> None:
    """Every frame, valid or not, gets one reply or one bad_request; the socket stays open."""
    async with connect(ws_url(live.gw), subprotocols=["hopline.v1"]) as ws:
        for frame in frames:
            await ws.send(frame)
        answers = [json.loads(await ws.recv()) for _ in frames]
        await ws.send(json.dumps({"id": "end", "data": "end"}))
        assert json.loads(await ws.recv()) == {"id": "end", "data": "end"}
    expected_ok = sorted(json.dumps(json.loads(f)["data"]) for f in frames if _valid_envelope(f))
    got_ok = sorted(json.dumps(a["data"]) for a in answers if "data" in a)
    assert got_ok == expected_ok
    errors = [a for a in answers if "error" in a]
    assert len(errors) + len(got_ok) == len(frames)
    assert {e["error"]["code"] for e in errors} <= {"bad_request"}
    await live.still_healthy()


def _valid_envelope(frame: str | bytes) -> bool:
    if isinstance(frame, bytes):
        return False
    try:
        obj = json.loads(frame)
    except ValueError:
        return False
    return (
        isinstance(obj, dict)
        and "id" in obj
        and (obj["id"] is None or type(obj["id"]) in (str, int, float))
        and isinstance(obj.get("data"), str)
    )


@FUZZ
@given(frames=st.lists(st.text(max_size=300) | st.binary(max_size=300), min_size=1, max_size=8))
async def test_random_plain_frames_are_echoed_in_order(live: Live, frames: list) -> None:
    """In plain mode any text or binary frame comes back unchanged, in order, same type."""
    async with connect(ws_url(live.gw)) as ws:
        for frame in frames:
            await ws.send(frame)
        assert [await ws.recv() for _ in frames] == frames
    await live.still_healthy()


raw_frames = st.builds(
    frame_bytes,
    opcode=st.sampled_from([0, 1, 2, 8, 9, 10]) | st.integers(0, 15),
    data=st.binary(max_size=200) | st.sampled_from([b"", b"\xff\xfe", "é".encode(), b"\x03\xe8"]),
    fin=st.booleans(),
    rsv=st.just(0) | st.integers(0, 7),
    mask=st.just(True) | st.booleans(),
)


@FUZZ
@given(frames=st.lists(raw_frames, min_size=1, max_size=6))
async def test_random_raw_frames_never_hurt_the_gateway(live: Live, frames: list[bytes]) -> None:
    """Arbitrary opcodes, flags, fragments, masking and payloads: answered or closed."""
    client = await RawClient.open(live.gw.port)
    try:
        for frame in frames:
            await client.write_raw(frame)
        # Read whatever comes back until the server closes or goes quiet.
        with contextlib.suppress(TimeoutError, ConnectionError):
            while True:
                await client.frame(timeout=0.2)
        code = client.protocol.close_code if client.protocol.state is State.CLOSED else None
        assert code is None or 1000 <= code < 5000
    finally:
        await client.close()
    await live.still_healthy()


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=300))
async def test_random_bytes_after_the_handshake_close_the_socket_cleanly(
    live: Live, garbage: bytes
) -> None:
    """Unparseable bytes (unmasked or malformed frames) end only that socket."""
    client = await RawClient.open(live.gw.port)
    try:
        await client.write_raw(garbage)
    finally:
        await client.close()
    await live.still_healthy()


@FUZZ
@given(request=st.binary(max_size=400))
async def test_random_http_requests_get_an_answer_or_a_close(live: Live, request: bytes) -> None:
    """Garbage in place of the HTTP request never breaks the server."""
    _, writer = await asyncio.open_connection("127.0.0.1", live.gw.port)
    writer.write(request + b"\r\n\r\n")
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await live.still_healthy()


header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)
authorizations = st.one_of(
    st.none(),
    header_text,
    st.builds(lambda t: f"Bearer {t}", header_text),
    st.builds(lambda: f"Bearer {_token()}"),
    st.builds(lambda t: f"Bearer {_token()[:-3]}{t}", header_text),
)
origins = st.one_of(
    st.none(), header_text, st.sampled_from(["https://app.example", "null", "https://evil"])
)
protocols = st.one_of(
    st.none(),
    header_text,
    st.builds(lambda t: f"hopline.v1, hopline.token.{t}", header_text),
    st.builds(lambda: f"hopline.plain, hopline.token.{_token()}"),
)


@FUZZ
@given(authorization=authorizations, origin=origins, protocol=protocols)
async def test_random_admission_headers_get_a_clean_verdict(
    guarded: Live, authorization: str | None, origin: str | None, protocol: str | None
) -> None:
    """Random Authorization, Origin and subprotocol headers: 101, 400, 401 or 403, no crash."""
    lines = [
        "GET /ws HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in (
        ("Authorization", authorization),
        ("Origin", origin),
        ("Sec-WebSocket-Protocol", protocol),
    ):
        if value is not None:
            lines.append(f"{name}: {value}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.gw.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if status_line:  # websockets may drop a request it cannot parse at all
        status = int(status_line.split()[1])
        assert status in (101, 400, 401, 403), status_line
        if status == 101:
            assert authorization is not None or (protocol and "hopline.token." in protocol)
            assert origin is None or normalize_origin(origin) == "https://app.example"
    await guarded.still_healthy()
