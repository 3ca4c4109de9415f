"""The asyncio client end to end: a real gateway, processor and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import jwt
import pytest
from websockets.asyncio.server import ServerConnection, serve

from hopline import (
    Client,
    ConnectError,
    ConnectionLost,
    ErrorCode,
    InvalidURL,
    RequestError,
    connect,
)
from hopline.broker_node import free_port
from tests.conftest import Stack, ws_url
from tests.helpers import eventually
from tests.sample_handlers import Gate

pytestmark = pytest.mark.timeout(60)


async def test_request_returns_the_reply(stack: Stack) -> None:
    """connect + request: 'hello' comes back as 'hello world' over hopline.v1."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw)) as client:
        assert isinstance(client, Client) and client.subprotocol == "hopline.v1"
        assert await client.request("hello") == "hello world"
    assert client.closed and client.close_reason == "connection closed (1000)"


async def test_concurrent_requests_each_get_their_own_reply(stack: Stack) -> None:
    """Many requests in flight at once on one socket: each caller gets its own reply."""
    gw = await stack.gateway()
    await stack.processor("upper")
    words = [f"word-{i}" for i in range(200)]
    async with connect(ws_url(gw)) as client:
        replies = await asyncio.gather(*(client.request(w) for w in words))
        assert client.unmatched == 0 and client.waiting == 0
    assert replies == [w.upper() for w in words]


async def test_an_error_reply_raises_request_error_with_its_code(stack: Stack) -> None:
    """A handler that raises: RequestError(processor_error); the connection stays usable."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    async with connect(ws_url(gw)) as client:
        with pytest.raises(RequestError) as info:
            await client.request("boom")
        assert info.value.code is ErrorCode.PROCESSOR_ERROR
        assert str(info.value).startswith("processor_error: ")
        assert await client.request("fine") == "fine"


async def test_the_gateways_timeout_is_a_request_error(stack: Stack) -> None:
    """No processor: the gateway answers 'timeout' after its request timeout."""
    gw = await stack.gateway(request_timeout=0.3)
    async with connect(ws_url(gw)) as client:
        with pytest.raises(RequestError) as info:
            await client.request("nobody listens")
    assert info.value.code is ErrorCode.TIMEOUT


async def test_the_clients_own_timeout_expires_a_request(stack: Stack) -> None:
    """With timeout=0.3 on the client, a request held longer fails on time; others don't."""
    gw = await stack.gateway()
    gate = Gate()
    await stack.processor(gate)
    loop = asyncio.get_running_loop()
    async with connect(ws_url(gw), timeout=0.3) as client:
        started = loop.time()
        with pytest.raises(RequestError) as info:
            await client.request("wait")
        elapsed = loop.time() - started
        assert info.value.code is ErrorCode.TIMEOUT
        assert info.value.message == "no reply within 0.3 s"
        assert 0.3 <= elapsed < 2.0
        assert await client.request("release") == "release done"
        await eventually(lambda: client.unmatched == 1, message="the late reply ignored")


async def test_plain_mode_matches_replies_by_order(stack: Stack) -> None:
    """plain=True: no subprotocol, text and binary requests, replies in order."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw), plain=True) as client:
        assert client.subprotocol is None
        text, binary = await asyncio.gather(client.request("hi"), client.request(b"\x00hi"))
    assert (text, binary) == ("hi world", b"\x00hi world")


async def test_stream_of_an_unstreamed_reply_is_one_chunk(stack: Stack) -> None:
    """stream() over today's gateway: the whole reply is the one and last chunk."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw)) as client:
        chunks = [chunk async for chunk in client.stream("hello")]
    assert chunks == ["hello world"]


async def test_chunks_are_streamed_and_request_sees_the_last() -> None:
    """Against a scripted hopline.v1 peer: exact chunk frames, in order, then the end.

    (A real gateway streams too: see the test below and tests/gateway/test_streaming.py;
    this peer pins the frames down exactly.)
    """

    async def streaming_peer(ws: ServerConnection) -> None:
        async for frame in ws:
            request = json.loads(frame)
            for part in ("one ", "two "):
                await ws.send(json.dumps({"id": request["id"], "data": part, "more": True}))
            await ws.send(json.dumps({"id": request["id"], "data": "three"}))

    async with serve(streaming_peer, "127.0.0.1", 0, subprotocols=["hopline.v1"]) as server:  # type: ignore[list-item]
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
        async with connect(url) as client:
            assert [c async for c in client.stream("count")] == ["one ", "two ", "three"]
            assert await client.request("count") == "three"
            assert client.unmatched == 0


async def test_closing_fails_waiting_requests_with_connection_lost(stack: Stack) -> None:
    """A request still waiting when the connection ends raises ConnectionLost."""
    gw = await stack.gateway()
    await stack.processor(Gate())
    client = await connect(ws_url(gw))
    waiting = await client.submit("wait")
    await client.close()
    with pytest.raises(ConnectionLost) as info:
        await waiting
    assert info.value.reason == "connection closed (1000)"
    with pytest.raises(ConnectionLost):
        await client.request("after close")


async def test_a_cancelled_request_is_abandoned(stack: Stack) -> None:
    """Cancelling request() stops waiting; the reply that comes later is ignored."""
    gw = await stack.gateway()
    await stack.processor(Gate())
    async with connect(ws_url(gw)) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.request("wait")
        assert client.waiting == 0
        assert await client.request("release") == "release done"
        await eventually(lambda: client.unmatched == 1, message="the late reply ignored")


async def test_token_auth_failure_is_fatal_with_the_hint(stack: Stack) -> None:
    """A gateway with --token-secret: no token is a fatal 401; a good token connects."""
    secret = "client-test-secret-long-enough-for-hs256"
    gw = await stack.gateway(token_secret=secret)
    await stack.processor()
    with pytest.raises(ConnectError) as info:
        await connect(ws_url(gw))
    assert (info.value.reason, info.value.retryable) == ("HTTP 401 (check --token)", False)
    assert str(info.value) == f"cannot connect to {ws_url(gw)}: HTTP 401 (check --token)"
    async with connect(
        ws_url(gw), token=jwt.encode({"exp": int(time.time() + 60)}, secret, "HS256")
    ) as client:
        assert await client.request("hi") == "hi world"


async def test_nothing_listening_is_a_retryable_connect_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    with pytest.raises(ConnectError) as info:
        await connect(url)
    assert (info.value.reason, info.value.retryable) == ("connection refused", True)


def test_a_url_without_scheme_is_refused_before_any_io() -> None:
    with pytest.raises(InvalidURL, match=r"did you mean ws://localhost:8000/ws\?"):
        connect("localhost:8000")


async def words(payload: str | bytes) -> AsyncIterator[str]:
    """A streaming handler: one chunk per word."""
    for word in str(payload).split():
        yield word + " "


async def test_a_streamed_reply_arrives_in_chunks_from_a_real_gateway(stack: Stack) -> None:
    """A generator handler: stream() yields every chunk; request() sees the last frame."""
    gw = await stack.gateway()
    await stack.processor(words)
    async with connect(ws_url(gw)) as client:
        assert [c async for c in client.stream("one two three")] == ["one ", "two ", "three "]
        assert await client.request("one two three") == "three "
        assert client.unmatched == 0
