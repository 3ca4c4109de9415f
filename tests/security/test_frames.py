"""Bad frames: oversized (also after inflating), invalid UTF-8, malformed envelopes."""

from __future__ import annotations

import asyncio
import json
import zlib

from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode, Opcode
from websockets.uri import parse_uri

from gateway._websockets_compat import MAX_FRAGMENTS
from tests.conftest import Stack, ws_url
from tests.security.checks import assert_serves
from tests.security.raw import RawClient, frame_bytes

LIMIT = 64 * 1024


async def test_frame_over_the_limit_closes_with_1009(stack: Stack) -> None:
    """A message one byte over the default 64 KiB limit closes the socket with 1009."""
    gw = await stack.gateway()
    await stack.processor()
    assert gw.settings.max_message_size == LIMIT
    async with connect(ws_url(gw), max_size=None, compression=None) as ws:
        await ws.send("x" * (LIMIT + 1))
        try:
            await ws.recv()
            raise AssertionError("the gateway answered an oversized frame")
        except ConnectionClosedError as exc:
            assert exc.rcvd is not None and exc.rcvd.code == CloseCode.MESSAGE_TOO_BIG
    await assert_serves(gw)
    assert gw.metrics.total("hopline_requests_total") == 2  # only the bystander's


async def test_message_at_the_limit_is_served(stack: Stack) -> None:
    """A message of exactly the limit is accepted and answered."""
    gw = await stack.gateway()
    await stack.processor("echo")
    async with connect(ws_url(gw), max_size=None) as ws:
        await ws.send("y" * LIMIT)
        assert await ws.recv() == "y" * LIMIT


async def test_configured_limit_applies(stack: Stack) -> None:
    """--max-message-size is the limit: 1 KiB + 1 closes with 1009, 1 KiB passes."""
    gw = await stack.gateway(max_message_size=1024)
    await stack.processor("echo")
    async with connect(ws_url(gw)) as ws:
        await ws.send("a" * 1024)
        assert await ws.recv() == "a" * 1024
        await ws.send("a" * 1025)
        try:
            await ws.recv()
            raise AssertionError("the gateway answered an oversized frame")
        except ConnectionClosedError as exc:
            assert exc.rcvd is not None and exc.rcvd.code == CloseCode.MESSAGE_TOO_BIG


async def test_compressed_frame_inflating_past_the_limit_closes_with_1009(stack: Stack) -> None:
    """A permessage-deflate frame far below the limit on the wire but 4 MiB inflated gets 1009."""
    gw = await stack.gateway()
    await stack.processor()
    client = await RawClient.open(gw.port, compress=True)
    assert client.response is not None and client.response.status_code == 101
    assert "permessage-deflate" in client.response.headers.get("Sec-WebSocket-Extensions", "")
    bomb = b"\x00" * (4 * 1024 * 1024)
    assert len(zlib.compress(bomb)) < LIMIT
    client.protocol.send_binary(bomb)
    await client.flush()
    assert client.sent_bytes < LIMIT  # what crossed the wire was small
    assert await client.closed() == CloseCode.MESSAGE_TOO_BIG
    await assert_serves(gw)
    assert gw.metrics.total("hopline_requests_total") == 2  # the bomb was never published


async def test_compressed_frames_within_the_limit_are_served(stack: Stack) -> None:
    """Compression itself works: a compressible message under the limit round-trips."""
    gw = await stack.gateway()
    await stack.processor("echo")
    async with connect(ws_url(gw), compression="deflate") as ws:
        await ws.send("z" * 60_000)
        assert await ws.recv() == "z" * 60_000


async def test_invalid_utf8_text_closes_with_1007(stack: Stack) -> None:
    """A text frame that is not UTF-8 closes the socket with 1007; nothing is published."""
    gw = await stack.gateway()
    await stack.processor()
    client = await RawClient.open(gw.port)
    client.protocol.send_text(b"caf\xc3")  # truncated sequence
    await client.flush()
    assert await client.closed() == CloseCode.INVALID_DATA
    await assert_serves(gw)
    assert gw.metrics.total("hopline_requests_total") == 2


async def test_invalid_utf8_in_a_later_fragment_closes_with_1007(stack: Stack) -> None:
    """Invalid UTF-8 in a continuation frame of a text message also closes with 1007."""
    gw = await stack.gateway()
    await stack.processor()
    client = await RawClient.open(gw.port)
    client.protocol.send_text(b"valid start ", fin=False)
    client.protocol.send_continuation(b"\xed\xa0\x80", fin=True)  # a UTF-16 surrogate
    await client.flush()
    assert await client.closed() == CloseCode.INVALID_DATA


async def test_malformed_envelopes_get_bad_request_and_the_socket_stays_usable(
    stack: Stack,
) -> None:
    """Each malformed hopline.v1 frame gets one bad_request; the socket keeps working."""
    gw = await stack.gateway()
    await stack.processor()
    bad = [
        "{not json",
        "[]",
        "42",
        json.dumps({"data": "no id"}),
        json.dumps({"id": 1}),
        json.dumps({"id": 2, "data": 3}),
        json.dumps({"id": {"nested": 1}, "data": "x"}),
        json.dumps({"id": True, "data": "x"}),
        '{"id": NaN, "data": "x"}',  # Python's json accepts these; JSON (and browsers) don't
        '{"id": -Infinity, "data": "x"}',
        '{"id": 1e999, "data": "x"}',  # overflows to infinity
        b'{"id": 9, "data": "binary"}',
    ]
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        for frame in bad:
            await ws.send(frame)
            error = json.loads(await ws.recv())
            assert error["error"]["code"] == "bad_request", frame
        await ws.send(json.dumps({"id": "ok", "data": "still here"}))
        assert json.loads(await ws.recv()) == {"id": "ok", "data": "still here world"}
    assert gw.metrics.total("hopline_errors_total", {"code": "bad_request"}) == len(bad)


async def test_malformed_envelope_echoes_the_id_it_could_read(stack: Stack) -> None:
    """A bad envelope with a readable id is answered with that id."""
    gw = await stack.gateway()
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        await ws.send(json.dumps({"id": "mine", "data": None}))
        error = json.loads(await ws.recv())
    assert error["id"] == "mine"
    assert error["error"]["code"] == "bad_request"


async def test_too_many_fragments_close_with_1009(stack: Stack) -> None:
    """A message in more fragments than websockets' cap (4,096) closes the socket with 1009."""
    gw = await stack.gateway()
    await stack.processor()
    client = await RawClient.open(gw.port)
    client.protocol.send_text(b"a", fin=False)
    for _ in range(MAX_FRAGMENTS):
        client.protocol.send_continuation(b"", fin=False)
    client.protocol.send_continuation(b"", fin=True)
    await client.flush()
    assert await client.closed() == CloseCode.MESSAGE_TOO_BIG
    await assert_serves(gw)
    assert gw.metrics.total("hopline_requests_total") == 2  # only the bystander's


async def test_frames_in_the_same_write_as_the_handshake_are_all_answered(stack: Stack) -> None:
    """Frames that arrive with the upgrade request, before the session starts, are answered in
    order (they wait for the session; none is lost)."""
    gw = await stack.gateway()
    await stack.processor()
    protocol = ClientProtocol(parse_uri(ws_url(gw)), max_size=None)
    protocol.send_request(protocol.connect())
    head = b"".join(protocol.data_to_send())
    frames = b"".join(frame_bytes(Opcode.TEXT, f"early {i}".encode()) for i in range(20))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    client = RawClient(reader, writer, protocol)
    await client.write_raw(head + frames)
    replies = [await client.message() for _ in range(20)]
    assert replies == [f"early {i} world" for i in range(20)]
    await client.close()
