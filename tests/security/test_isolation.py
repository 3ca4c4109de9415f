"""No client can obtain another client's reply: ids are echoed, never used for routing."""

from __future__ import annotations

import asyncio
import json
import random

import aio_pika
import pytest
from websockets.asyncio.client import connect

from tests.conftest import Stack, ws_url
from tests.helpers import eventually


async def jittery(payload: str | bytes) -> str | bytes:
    """Echo after a random short pause, so replies to different sockets interleave."""
    await asyncio.sleep(random.random() * 0.01)
    return payload


@pytest.mark.parametrize("batching", ["on", "off"])
async def test_two_clients_with_the_same_ids_each_get_only_their_own_replies(
    stack: Stack, batching: str
) -> None:
    """Two sockets send the same ids at once; each gets exactly its own 100 replies."""
    gw = await stack.gateway(batching=batching)
    await stack.processor(jittery, prefetch=64)
    if batching == "on":
        await stack.batching_ready(gw)
    ids: list[object] = [*range(50), *(f"id-{i}" for i in range(49)), None]

    async def client(name: str) -> dict[str, str]:
        got: dict[str, str] = {}
        async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
            for i in ids:
                await ws.send(json.dumps({"id": i, "data": f"{name}:{i}"}))
            for _ in ids:
                reply = json.loads(await ws.recv())
                assert json.dumps(reply["id"]) not in got, "one id answered twice"
                got[json.dumps(reply["id"])] = reply["data"]
            await ws.send(json.dumps({"id": "last", "data": f"{name}:last"}))
            assert json.loads(await ws.recv()) == {"id": "last", "data": f"{name}:last"}
        return got

    a, b = await asyncio.gather(client("A"), client("B"))
    assert a == {json.dumps(i): f"A:{i}" for i in ids}
    assert b == {json.dumps(i): f"B:{i}" for i in ids}
    assert gw.metrics.total("hopline_dropped_replies_total") == 0


async def test_published_request_carries_the_gateways_ids_not_the_clients(
    stack: Stack, rabbitmq_url: str
) -> None:
    """On the wire: fresh correlation id, the gateway's reply queue, only the data as body."""
    gw = await stack.gateway(batching="off")  # no processor: the request waits in the queue
    envelope = {
        "id": "client-chosen",
        "data": "payload",
        "reply_to": "amq.rabbitmq.reply-to",
        "correlation_id": "client-chosen",
    }
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        await ws.send(json.dumps(envelope))
        conn = await aio_pika.connect(rabbitmq_url)
        async with conn:
            channel = await conn.channel()
            queue = await channel.get_queue(gw.settings.topology.input_queue)
            message = None

            async def got_one() -> bool:
                nonlocal message
                message = await queue.get(no_ack=True, fail=False)
                return message is not None

            await eventually(got_one, message="the request in the input queue")
            assert message is not None
            assert message.body == b"payload"
            assert message.reply_to == gw.broker.reply_queue_name
            assert message.correlation_id not in (None, "client-chosen")
            assert "client-chosen" not in json.dumps(message.headers, default=str)


async def test_a_reply_forged_with_a_client_id_reaches_nobody(
    stack: Stack, rabbitmq_url: str
) -> None:
    """A message sent to the gateway's reply queue with a client's id is dropped and counted."""
    gw = await stack.gateway(batching="off", request_timeout=1.0)
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
        await ws.send(json.dumps({"id": "7", "data": "waiting"}))
        conn = await aio_pika.connect(rabbitmq_url)
        async with conn:
            channel = await conn.channel()
            for corr in ("7", "waiting", ""):
                await channel.default_exchange.publish(
                    aio_pika.Message(b"forged", correlation_id=corr or None),
                    routing_key=gw.broker.reply_queue_name,
                )
        await eventually(
            lambda: gw.metrics.total("hopline_dropped_replies_total") == 3,
            message="forged replies dropped",
        )
        reply = json.loads(await ws.recv())  # the real outcome: no processor, so a timeout
    assert reply["id"] == "7"
    assert reply["error"]["code"] == "timeout"
