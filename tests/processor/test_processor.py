"""The processor against plain AMQP RPC clients, custom handlers, and the gateway in plain mode."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import aio_pika
import pytest
from websockets.asyncio.client import connect

from processor.handlers import HandlerError, load_handler
from tests.conftest import Stack, ws_url


async def rpc_call(
    url: str, queue: str, body: bytes, content_type: str | None = None
) -> tuple[bytes, dict]:
    """One request/reply with a bare aio-pika client that knows nothing of hopline."""
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        reply_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        corr = str(uuid.uuid4())
        await channel.default_exchange.publish(
            aio_pika.Message(
                body, correlation_id=corr, reply_to=reply_queue.name, content_type=content_type
            ),
            routing_key=queue,
        )
        async with asyncio.timeout(10):
            async with reply_queue.iterator(no_ack=True) as messages:
                async for message in messages:
                    assert message.correlation_id == corr
                    return message.body, dict(message.headers or {})
    raise AssertionError("no reply")


async def test_bare_aio_pika_rpc_client_gets_a_reply(stack: Stack) -> None:
    """Any client following reply_to + correlation_id is served, not only the gateway."""
    await stack.processor()
    body, headers = await rpc_call(stack.rabbitmq_url, stack.topology.input_queue, b"hello")
    assert body == b"hello world"
    assert "x-hopline-error" not in headers


async def test_bare_client_sees_handler_errors_in_a_header(stack: Stack) -> None:
    """A raising handler answers with x-hopline-error and keeps consuming."""
    await stack.processor("tests.sample_handlers:explode")
    body, headers = await rpc_call(stack.rabbitmq_url, stack.topology.input_queue, b"boom")
    assert headers["x-hopline-error"] == "processor_error"
    assert b"handler exploded" in body
    body, _ = await rpc_call(stack.rabbitmq_url, stack.topology.input_queue, b"still here")
    assert body == b"still here"


async def test_custom_handler_module_is_loaded(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--handler module:function loads a user's module, sync or async."""
    (tmp_path / "my_handlers.py").write_text("async def shout(p):\n    return p.upper() + '!'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gw = await stack.gateway()
    await stack.processor("my_handlers:shout")
    async with connect(ws_url(gw)) as ws:
        await ws.send("hey")
        assert await ws.recv() == "HEY!"
    sys.modules.pop("my_handlers", None)


@pytest.mark.parametrize(
    "spec", ["nope", "no_such_module_x:f", "json:no_such_attr", "json:__doc__"]
)
def test_bad_handler_specs_are_clear_errors(spec: str) -> None:
    """Unknown built-ins, modules and attributes raise HandlerError naming the problem."""
    with pytest.raises(HandlerError):
        load_handler(spec)


async def test_builtin_handlers(stack: Stack) -> None:
    """echo and upper do what they say, for text and binary."""
    assert load_handler("echo")("x") == "x"
    assert load_handler("upper")(b"ab") == b"AB"
    assert load_handler("world")("hello") == "hello world"


async def test_plain_rpc_server_works_behind_the_gateway(stack: Stack) -> None:
    """With no hopline processor, the gateway speaks plain AMQP RPC (one message per request)."""
    gw = await stack.gateway()
    conn = await aio_pika.connect(stack.rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(stack.topology.input_queue, durable=True)

        async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await channel.default_exchange.publish(
                    aio_pika.Message(message.body[::-1], correlation_id=message.correlation_id),
                    routing_key=message.reply_to,
                )

        await queue.consume(serve)
        async with connect(ws_url(gw)) as ws:
            for i in range(20):
                await ws.send(f"abc{i}")
            replies = [await ws.recv() for _ in range(20)]
    assert replies == [f"abc{i}"[::-1] for i in range(20)]
    assert gw.broker.batching_active is False


async def test_batching_off_still_works_with_hopline_processors(stack: Stack) -> None:
    """--batching off sends one plain message per request to a hopline processor."""
    gw = await stack.gateway(batching="off")
    await stack.processor()
    async with connect(ws_url(gw)) as ws:
        for i in range(30):
            await ws.send(f"m{i}")
        replies = [await ws.recv() for _ in range(30)]
    assert replies == [f"m{i} world" for i in range(30)]
    assert gw.metrics.total("hopline_publish_batch_requests_count") == 0
