"""Queue statistics from the RabbitMQ management API, and the fall back to AMQP declares."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from gateway.config import GatewaySettings
from gateway.management import ManagementError, credentials, fetch_queues, queue_url
from gateway.server import Gateway
from hopline.broker_node import PrivateBroker, free_port, node_port
from hopline.wire.addresses import vhost_of
from hopline.wire.amqp import QueueTopology
from processor.config import ProcessorSettings
from processor.worker import Processor
from tests.conftest import Stack, http_url, ws_url
from tests.helpers import eventually, http_get


def test_vhost_credentials_and_url_come_from_the_urls() -> None:
    """The vhost and credentials come from the AMQP URL unless the management URL has its own."""
    assert vhost_of("amqp://u:p@h:5672/") == "/"
    assert vhost_of("amqp://h") == "/"
    assert vhost_of("amqp://h/prod%2Fa") == "prod/a"
    assert credentials("http://h:15672", "amqp://u:p%40ss@h/") == ("u", "p@ss")
    assert credentials("http://admin:pw@h:15672", "amqp://u:p@h/") == ("admin", "pw")
    assert (
        queue_url("http://admin:pw@h:15672/rabbit/", "/", "in.batch")
        == "http://h:15672/rabbit/api/queues/%2F/in.batch"
    )


async def test_unreachable_management_api_is_an_error_not_a_hang() -> None:
    """A management URL nobody listens on raises ManagementError quickly."""
    with pytest.raises(ManagementError):
        await fetch_queues(f"http://127.0.0.1:{free_port()}", "amqp://g:g@h/", ["q"], timeout=2)


async def test_stats_fall_back_to_amqp_when_management_fails(stack: Stack) -> None:
    """With a dead management URL, /stats still reports queues, from AMQP (unacked null)."""
    gw = await stack.gateway(management_url=f"http://127.0.0.1:{free_port()}")
    await stack.processor()
    doc = (await http_get(http_url(gw, "/stats"))).json()
    assert doc["queues"]["source"] == "amqp"
    names = [item["name"] for item in doc["queues"]["items"]]
    assert names == [stack.topology.input_queue, stack.topology.batch_queue]
    assert all(item["unacked"] is None for item in doc["queues"]["items"])


@pytest.fixture
async def managed_broker() -> AsyncIterator[PrivateBroker]:
    """A private RabbitMQ node with the management plugin, answering its HTTP API."""
    node = PrivateBroker(management_port=node_port())
    await asyncio.to_thread(node.start)
    try:
        api = f"http://127.0.0.1:{node.management_port}"

        async def api_answers() -> bool:
            try:
                await fetch_queues(api, node.url, [], timeout=1)
                await fetch_queues(api, node.url, ["absent"], timeout=1)
            except ManagementError as exc:
                return "HTTP 404" in str(exc)  # the API is up and says the queue is absent
            return False

        await eventually(api_answers, timeout=60, interval=0.5, message="management API up")
        yield node
    finally:
        await asyncio.to_thread(node.cleanup)


@pytest.mark.timeout(180)
async def test_stats_report_unacked_from_the_management_api(
    managed_broker: PrivateBroker,
) -> None:
    """With management_url, /stats says source 'management' and counts unacked messages."""
    topology = QueueTopology(input_queue="mgmt-test")
    api = f"http://127.0.0.1:{managed_broker.management_port}"
    release = asyncio.Event()

    async def held(payload: str | bytes) -> str | bytes:
        await release.wait()
        return payload

    gw = Gateway(
        GatewaySettings(
            rabbitmq_url=managed_broker.url,
            host="127.0.0.1",
            port=0,
            topology=topology,
            batching="off",
            management_url=api,
            stats_interval=0.2,
        )
    )
    await gw.start()
    proc = Processor(
        ProcessorSettings(rabbitmq_url=managed_broker.url, topology=topology, prefetch=3), held
    )
    await proc.start()
    try:
        async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
            for i in range(10):
                await ws.send(json.dumps({"id": i, "data": f"m{i}"}))

            async def counted() -> bool:
                doc = (await http_get(http_url(gw, "/stats"))).json()
                queues = doc["queues"]
                item = next(q for q in queues["items"] if q["name"] == "mgmt-test")
                depth = (item["ready"], item["unacked"], item["consumers"])
                return queues["source"] == "management" and depth == (7, 3, 1)

            # The broker refreshes management statistics every 5 s.
            await eventually(counted, timeout=30, interval=0.5, message="7 ready, 3 unacked")
            release.set()
            replies = {json.loads(await ws.recv())["id"] for _ in range(10)}
        assert replies == set(range(10))
    finally:
        release.set()
        with contextlib.suppress(Exception):
            await proc.stop()
        await gw.stop()
