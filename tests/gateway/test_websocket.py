"""/ws end to end against a real broker: plain mode, hopline.v1, ordering, errors."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from tests.conftest import Stack, ws_url
from tests.sample_handlers import Barrier, Gate


async def test_hello_gets_hello_world(stack: Stack) -> None:
    """The original design's example: send 'hello', receive 'hello world'."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw)) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello world"


async def test_five_concurrent_clients_get_their_own_replies(stack: Stack) -> None:
    """Five sockets at once, each gets the reply to its own message."""
    gw = await stack.gateway()
    await stack.processor()

    async def client(i: int) -> str:
        async with connect(ws_url(gw)) as ws:
            await ws.send(f"hello from client {i}")
            return await ws.recv()

    replies = await asyncio.gather(*(client(i) for i in range(5)))
    assert replies == [f"hello from client {i} world" for i in range(5)]


async def test_hundred_pipelined_messages_are_all_in_flight_and_come_back_in_order(
    stack: Stack,
) -> None:
    """100 messages sent without waiting are all handled at once and answered in order."""
    gw = await stack.gateway()
    barrier = Barrier(100)  # answers nobody until all 100 are being handled at once
    await stack.processor(barrier, prefetch=128)
    async with connect(ws_url(gw)) as ws:
        for i in range(100):
            await ws.send(f"m{i}")
        replies = [await ws.recv() for _ in range(100)]
    assert replies == [f"m{i}" for i in range(100)]
    assert barrier.arrived == 100


async def test_binary_in_binary_out(stack: Stack) -> None:
    """A binary frame is answered with a binary frame."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw)) as ws:
        await ws.send(b"\x00\xffhello")
        reply = await ws.recv()
    assert reply == b"\x00\xffhello world"


async def test_envelope_mode_replies_out_of_order_with_client_ids(stack: Stack) -> None:
    """In hopline.v1 a fast request overtakes a slow one; ids tie replies to requests."""
    gw = await stack.gateway()
    gate = Gate()
    await stack.processor(gate)
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        assert ws.subprotocol == "hopline.v1"
        await ws.send(json.dumps({"id": "slow", "data": "wait"}))
        await ws.send(json.dumps({"id": 2, "data": "release"}))
        first = json.loads(await ws.recv())
        second = json.loads(await ws.recv())
    assert first == {"id": 2, "data": "release done"}
    assert second == {"id": "slow", "data": "wait done"}


async def test_malformed_envelope_gets_bad_request_and_socket_stays_usable(stack: Stack) -> None:
    """A bad envelope is answered with bad_request; the next good one still works."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        await ws.send("{not json")
        error = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": 1, "data": "hello"}))
        reply = json.loads(await ws.recv())
    assert error["id"] is None
    assert error["error"]["code"] == "bad_request"
    assert reply == {"id": 1, "data": "hello world"}


async def test_timeout_yields_one_error_frame_and_socket_stays_open(stack: Stack) -> None:
    """With no processor, each request gets exactly one timeout error frame."""
    gw = await stack.gateway(request_timeout=0.3)
    async with connect(ws_url(gw)) as ws:
        await ws.send("first")
        await ws.send("second")
        errors = [json.loads(await ws.recv()) for _ in range(2)]
        assert [e["error"]["code"] for e in errors] == ["timeout", "timeout"]
        assert gw.broker.pending_requests == 0


async def test_handler_exception_becomes_processor_error(stack: Stack) -> None:
    """A raising handler yields processor_error; the processor keeps serving."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        await ws.send(json.dumps({"id": 1, "data": "boom"}))
        error = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": 2, "data": "fine"}))
        ok = json.loads(await ws.recv())
    assert error["id"] == 1
    assert error["error"]["code"] == "processor_error"
    assert "handler exploded" in error["error"]["message"]
    assert ok == {"id": 2, "data": "fine"}


async def test_plain_mode_error_frame_keeps_order(stack: Stack) -> None:
    """In plain mode an error frame takes its request's place in the reply order."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    async with connect(ws_url(gw)) as ws:
        for message in ("a", "boom", "c"):
            await ws.send(message)
        replies = [await ws.recv() for _ in range(3)]
    assert replies[0] == "a"
    assert json.loads(replies[1])["error"]["code"] == "processor_error"
    assert replies[2] == "c"


async def test_handler_returning_wrong_type_is_processor_error(stack: Stack) -> None:
    """A handler that returns neither str nor bytes gives processor_error."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:wrong_type")
    async with connect(ws_url(gw)) as ws:
        await ws.send("x")
        error = json.loads(await ws.recv())
    assert error["error"]["code"] == "processor_error"
    assert "expected str or bytes" in error["error"]["message"]


async def test_closed_socket_cleans_up_its_pending_requests(stack: Stack) -> None:
    """Requests of a socket that closes stop counting as pending."""
    gw = await stack.gateway()
    gate = Gate()
    await stack.processor(gate)
    async with connect(ws_url(gw)) as ws:
        for i in range(5):
            await ws.send(f"wait{i}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while gw.broker.pending_requests < 5:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
    deadline = asyncio.get_running_loop().time() + 5
    while gw.broker.pending_requests or gw.active_websockets:
        assert asyncio.get_running_loop().time() < deadline, "pending requests leaked"
        await asyncio.sleep(0.01)
    gate.released.set()


async def test_compression_none_declines_permessage_deflate(stack: Stack) -> None:
    """--compression none: a client offering deflate gets no extension and is still served."""
    gw = await stack.gateway(compression="none")
    await stack.processor()
    async with connect(ws_url(gw), compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("hello")
        assert await ws.recv() == "hello world"
    gw2 = await stack.gateway()
    async with connect(ws_url(gw2), compression="deflate") as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
