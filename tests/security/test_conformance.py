"""RFC 6455 corner cases against the gateway with an echo processor (`--handler echo`).

An independent conformance suite (Autobahn-style) will drive the gateway in echo
mode with our settings; these raw-frame tests pin the behaviour it checks:
fragmentation, control frames, the close handshake, and frame-level errors.
"""

from __future__ import annotations

import pytest
from websockets.frames import CloseCode, Opcode

from gateway.server import Gateway
from tests.conftest import Stack
from tests.helpers import eventually
from tests.security.raw import RawClient, frame_bytes

PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR


@pytest.fixture
async def echo(stack: Stack) -> Gateway:
    gw = await stack.gateway()
    await stack.processor("echo")
    return gw


async def test_fragmented_text_is_echoed_as_one_message(echo: Gateway) -> None:
    """Three fragments (one empty) are reassembled and echoed as one text message."""
    client = await RawClient.open(echo.port)
    client.protocol.send_text(b"Hello, ", fin=False)
    client.protocol.send_continuation(b"", fin=False)
    client.protocol.send_continuation("wörld".encode(), fin=True)
    await client.flush()
    assert await client.message() == "Hello, wörld"
    await client.close()


async def test_ping_inside_a_fragmented_message_is_answered_first(echo: Gateway) -> None:
    """A ping between fragments gets its pong at once; the message is still echoed whole."""
    client = await RawClient.open(echo.port)
    client.protocol.send_binary(b"\x00\x01", fin=False)
    client.protocol.send_ping(b"mid")
    client.protocol.send_continuation(b"\x02", fin=True)
    await client.flush()
    pong = await client.frame()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"mid")
    assert await client.message() == b"\x00\x01\x02"
    await client.close()


@pytest.mark.parametrize("payload", [b"", b"x" * 125, bytes(range(125))])
async def test_ping_gets_a_pong_with_the_same_payload(echo: Gateway, payload: bytes) -> None:
    """Pings up to the 125-byte control frame limit are answered with identical pongs."""
    client = await RawClient.open(echo.port)
    client.protocol.send_ping(payload)
    await client.flush()
    pong = await client.frame()
    assert (pong.opcode, pong.data) == (Opcode.PONG, payload)
    await client.close()


async def test_unsolicited_pong_is_ignored(echo: Gateway) -> None:
    """A pong nobody asked for changes nothing; the next message is echoed."""
    client = await RawClient.open(echo.port)
    client.protocol.send_pong(b"unasked")
    client.protocol.send_text(b"after")
    await client.flush()
    assert await client.message() == "after"
    await client.close()


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_empty_messages_are_echoed(echo: Gateway, kind: str) -> None:
    """An empty text or binary message comes back empty, with its type, and the socket
    goes on serving (an empty reply frame once half-closed it)."""
    client = await RawClient.open(echo.port)
    if kind == "text":
        client.protocol.send_text(b"")
    else:
        client.protocol.send_binary(b"")
    await client.flush()
    assert await client.message() == ("" if kind == "text" else b"")
    client.protocol.send_text(b"next")
    await client.flush()
    assert await client.message() == "next"
    await client.close()


async def test_many_small_messages_are_echoed_in_order(echo: Gateway) -> None:
    """500 messages sent back to back come back in order (plain mode keeps order)."""
    client = await RawClient.open(echo.port)
    for i in range(500):
        client.protocol.send_text(str(i).encode())
    await client.flush()
    assert [await client.message() for _ in range(500)] == [str(i) for i in range(500)]
    await client.close()


async def test_compressed_fragmented_message_round_trips(echo: Gateway) -> None:
    """permessage-deflate with fragments: decompressed, echoed, compressed back."""
    client = await RawClient.open(echo.port, compress=True)
    client.protocol.send_text(b"abc" * 1000, fin=False)
    client.protocol.send_continuation(b"def" * 1000, fin=True)
    await client.flush()
    assert await client.message() == "abc" * 1000 + "def" * 1000
    await client.close()


@pytest.mark.parametrize(
    ("case", "frames"),
    [
        ("ping over 125 bytes", [frame_bytes(Opcode.PING, b"x" * 126)]),
        ("fragmented ping", [frame_bytes(Opcode.PING, b"x", fin=False)]),
        ("continuation without a start", [frame_bytes(Opcode.CONT, b"x")]),
        (
            "new message inside a fragmented one",
            [frame_bytes(Opcode.TEXT, b"a", fin=False), frame_bytes(Opcode.TEXT, b"b")],
        ),
        ("reserved opcode 3", [frame_bytes(3, b"")]),
        ("reserved control opcode 11", [frame_bytes(11, b"")]),
        ("RSV2 set without an extension", [frame_bytes(Opcode.TEXT, b"a", rsv=2)]),
        ("RSV1 set without compression", [frame_bytes(Opcode.TEXT, b"a", rsv=4)]),
        ("unmasked client frame", [frame_bytes(Opcode.TEXT, b"a", mask=False)]),
        ("close with a 1-byte payload", [frame_bytes(Opcode.CLOSE, b"\x03")]),
    ],
)
async def test_protocol_violations_close_with_1002(
    echo: Gateway, case: str, frames: list[bytes]
) -> None:
    """Frame-level violations close the socket with 1002 and leave the gateway serving."""
    client = await RawClient.open(echo.port)
    for frame in frames:
        await client.write_raw(frame)
    assert await client.closed() == PROTOCOL_ERROR, case
    await eventually(lambda: echo.active_websockets == 0, message="session ended")


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
async def test_invalid_close_codes_close_with_1002(echo: Gateway, code: int) -> None:
    """Close codes that may not appear on the wire are answered with 1002."""
    client = await RawClient.open(echo.port)
    await client.write_raw(frame_bytes(Opcode.CLOSE, code.to_bytes(2, "big")))
    assert await client.closed() == PROTOCOL_ERROR


async def test_close_reason_with_invalid_utf8_closes_with_1007(echo: Gateway) -> None:
    """A close frame whose reason is not UTF-8 is answered with 1007."""
    client = await RawClient.open(echo.port)
    await client.write_raw(frame_bytes(Opcode.CLOSE, b"\x03\xe8\xff\xfe"))
    assert await client.closed() == CloseCode.INVALID_DATA


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
async def test_close_handshake_echoes_valid_codes(echo: Gateway, code: int) -> None:
    """A client close with a valid code gets a close with the same code, then TCP closes."""
    client = await RawClient.open(echo.port)
    client.protocol.send_close(code, "bye")
    await client.flush()
    assert await client.closed() == code
    await eventually(lambda: echo.active_websockets == 0, message="session ended")


async def test_close_without_a_code_is_answered(echo: Gateway) -> None:
    """An empty close frame is answered (with 1000/no status) and the socket ends."""
    client = await RawClient.open(echo.port)
    await client.write_raw(frame_bytes(Opcode.CLOSE, b""))
    assert await client.closed() in (CloseCode.NORMAL_CLOSURE, CloseCode.NO_STATUS_RCVD)


async def test_data_after_close_is_ignored(echo: Gateway) -> None:
    """Frames after the client's close frame are not processed."""
    client = await RawClient.open(echo.port)
    await client.write_raw(
        frame_bytes(Opcode.CLOSE, (1000).to_bytes(2, "big")) + frame_bytes(Opcode.TEXT, b"too late")
    )
    assert await client.closed() == CloseCode.NORMAL_CLOSURE
    await eventually(lambda: echo.active_websockets == 0, message="session ended")
    assert echo.metrics.total("hopline_requests_total") == 0


async def test_large_messages_round_trip_with_a_raised_limit(stack: Stack) -> None:
    """With --max-message-size raised (as for conformance case 9), 16 MiB messages echo back."""
    size = 16 * 1024 * 1024
    gw = await stack.gateway(max_message_size=size)
    await stack.processor("echo")
    client = await RawClient.open(gw.port)
    client.protocol.send_binary(b"\xa5" * size)
    client.protocol.send_text(b"*" * size)
    await client.flush()
    assert await client.message(timeout=30) == b"\xa5" * size
    assert await client.message(timeout=30) == "*" * size
    await client.close()


def _mixed_stream() -> tuple[bytes, list[str | bytes]]:
    """Frames the gateway reads itself (whole, final text/binary) between frames websockets
    reads (a ping, a fragmented message), with 7-bit and 16-bit lengths, in one stream."""
    frames = [
        (frame_bytes(Opcode.TEXT, b"a"), "a"),
        (frame_bytes(Opcode.BINARY, b"\x01\x02"), b"\x01\x02"),
        (frame_bytes(Opcode.PING, b"p"), None),
        (frame_bytes(Opcode.TEXT, b"b1", fin=False), None),
        (frame_bytes(Opcode.CONT, b"b2"), "b1b2"),
        (frame_bytes(Opcode.TEXT, "é".encode() * 100), "é" * 100),
        (frame_bytes(Opcode.TEXT, b""), ""),
        (frame_bytes(Opcode.TEXT, b"d"), "d"),
    ]
    return b"".join(f for f, _ in frames), [m for _, m in frames if m is not None]


@pytest.mark.parametrize("cut", [None, 1, 3, 7, 30, 31, 33, 120, -1])
async def test_frames_cut_anywhere_between_writes_are_echoed_in_order(
    echo: Gateway, cut: int | None
) -> None:
    """However the stream is split between TCP writes (inside a header, a mask, a
    payload, a control frame), every message comes back once, in order, and the ping
    gets its pong."""
    client = await RawClient.open(echo.port)
    stream, expected = _mixed_stream()
    if cut is None:
        await client.write_raw(stream)
    else:
        await client.write_raw(stream[:cut])
        # The gateway reads the first part alone before the second arrives.
        await eventually(lambda: client.writer.transport.get_write_buffer_size() == 0)
        await client.write_raw(stream[cut:])
    frames = [await client.frame() for _ in range(len(expected) + 1)]
    assert [f.data for f in frames if f.opcode is Opcode.PONG] == [b"p"]
    data = [f for f in frames if f.opcode is not Opcode.PONG]
    messages = [f.data.decode() if f.opcode is Opcode.TEXT else bytes(f.data) for f in data]
    assert messages == expected
    await client.close()


_BAD_FRAMES = {
    "invalid UTF-8": (frame_bytes(Opcode.TEXT, b"caf\xc3"), CloseCode.INVALID_DATA),
    "unmasked": (frame_bytes(Opcode.TEXT, b"x", mask=False), PROTOCOL_ERROR),
    "RSV1 set": (frame_bytes(Opcode.TEXT, b"x", rsv=4), PROTOCOL_ERROR),
    "over the size limit": (frame_bytes(Opcode.TEXT, b"x" * 70_000), CloseCode.MESSAGE_TOO_BIG),
}


@pytest.mark.parametrize("case", list(_BAD_FRAMES))
async def test_a_bad_frame_after_good_ones_in_one_write_closes_after_answering_them(
    echo: Gateway, case: str
) -> None:
    """The good frames before a bad one in the same write become requests; the bad one
    closes the socket with its code (the close frame goes out at once, before their
    replies could); the frame after it is not read."""
    bad, code = _BAD_FRAMES[case]
    client = await RawClient.open(echo.port)
    good = frame_bytes(Opcode.TEXT, b"one") + frame_bytes(Opcode.TEXT, b"two")
    await client.write_raw(good + bad + frame_bytes(Opcode.TEXT, b"after"))
    assert await client.closed() == code, case
    assert echo.metrics.total("hopline_requests_total") == 2, case
    await eventually(lambda: echo.active_websockets == 0, message="session ended")
