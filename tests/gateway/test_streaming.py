"""Streamed replies end to end: processor generator -> AMQP partial batches -> gateway -> client."""

from __future__ import annotations

import asyncio
import json
import time

from websockets.asyncio.client import connect

import hopline
from tests.conftest import Stack, ws_url
from tests.sample_handlers import GatedWords


async def test_100_chunks_reach_a_hopline_v1_client_in_order_chunk_by_chunk(stack: Stack) -> None:
    """49 'more' frames arrive while the handler waits on its gate; 100 frames in order."""
    handler = GatedWords()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"id": 7, "data": "a"}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(49)]
        assert not handler.gate.is_set(), "chunks only arrived after the handler finished"
        handler.gate.set()
        while "more" in frames[-1]:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert frames[:-1] == [{"id": 7, "data": f"a{i},", "more": True} for i in range(99)]
    assert frames[-1] == {"id": 7, "data": "a99,"}


async def test_plain_mode_gets_one_frame_with_the_chunks_joined(stack: Stack) -> None:
    """A plain-mode client sees one reply frame per request: the chunks joined, in order."""
    handler = GatedWords()
    handler.gate.set()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    async with connect(ws_url(gw)) as ws:
        await ws.send("p")
        await ws.send("q")
        replies = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]
    assert replies == ["".join(f"{x}{i}," for i in range(100)) for x in "pq"]


async def test_the_python_client_yields_the_chunks(stack: Stack) -> None:
    """client.stream() yields every chunk, the final reply last; a built-in handler streams."""
    gw = await stack.gateway()
    await stack.processor("words")
    await stack.batching_ready(gw)
    async with hopline.connect(ws_url(gw)) as client:
        chunks = [chunk async for chunk in client.stream("one two three")]
    assert chunks == ["one ", "two ", "three"]


async def test_closing_the_client_mid_stream_closes_the_generator_within_a_second(
    stack: Stack,
) -> None:
    """The gateway cancels the stream on the processor: the generator's finally runs."""
    handler = GatedWords()  # stalls after 50 chunks: only a cancel ends it
    gw = await stack.gateway()
    proc = await stack.processor(handler)
    await stack.batching_ready(gw)
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"id": 1, "data": "a"}))
        for _ in range(49):
            await asyncio.wait_for(ws.recv(), 10)
    closed_at = time.monotonic()
    await asyncio.wait_for(handler.closed.wait(), 1.0)
    print(f"[client gone] generator closed {(time.monotonic() - closed_at) * 1000:.0f} ms later")
    assert proc.control.cancels == 1
    assert gw.broker.pending_requests == 0


async def test_stream_endpoint_sends_one_event_per_chunk_as_it_arrives(stack: Stack) -> None:
    """GET /stream/a: 49 'data:' events before the handler's gate opens, 100 in all, then end."""
    handler = GatedWords()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(f"GET /stream/a HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n".encode())
    raw = b""
    async with asyncio.timeout(10):
        while raw.count(b"data: a") < 49:
            raw += await reader.read(65536)
    assert not handler.gate.is_set()
    assert raw.startswith(b"HTTP/1.1 200 ")
    handler.gate.set()
    async with asyncio.timeout(10):
        raw += await reader.read()
    writer.close()
    body = raw.partition(b"\r\n\r\n")[2].decode()
    data = [line[6:] for line in body.splitlines() if line.startswith("data: a")]
    assert data == [f"a{i}," for i in range(100)]
    assert body.rstrip().split("\n\n")[-1].startswith("event: end\n")
    assert "event: error" not in body


async def test_100_chunks_reach_the_python_client_chunk_by_chunk(stack: Stack) -> None:
    """client.stream() yields 49 chunks while the handler waits on its gate, 100 in order."""
    handler = GatedWords()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    chunks: list[str] = []
    async with hopline.connect(ws_url(gw)) as client:
        async for chunk in client.stream("a"):
            chunks.append(chunk)
            if len(chunks) == 49:
                assert not handler.gate.is_set(), "chunks only arrived after the handler finished"
                handler.gate.set()
    assert chunks == [f"a{i}," for i in range(100)]
