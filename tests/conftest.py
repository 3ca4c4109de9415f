"""Shared fixtures: a real RabbitMQ broker, per-test queues, in-process gateways and processors.

Every test gets its own input queue name, so tests never see each other's traffic
(nor that of a stack running on the same broker). Without a broker at RABBITMQ_URL the
session starts a private node (tests/broker_session.py); nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from hypothesis import HealthCheck, settings

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.wire.amqp import QueueTopology
from processor.config import ProcessorSettings
from processor.handlers import Handler, load_handler, load_hooks
from processor.worker import Processor
from tests.broker_session import (  # noqa: F401 - the session's broker hooks
    pytest_sessionfinish,
    pytest_sessionstart,
    session_url,
)

# Hypothesis' per-example deadline is a timed assertion: on a loaded 2-core CI box it fails
# tests that are merely slow, so it is off everywhere (example counts stay bounded per test).
settings.register_profile("hopline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hopline")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """URL of the test broker: RABBITMQ_URL, or the session's private node (see
    tests/broker_session.py); the session does not start without one."""
    return session_url()


@pytest.fixture
async def topology(rabbitmq_url: str) -> AsyncIterator[QueueTopology]:
    """Fresh queue names for one test; its queues are deleted afterwards."""
    topo = QueueTopology(input_queue=f"test-{uuid.uuid4().hex[:12]}")
    yield topo
    await delete_queues(rabbitmq_url, topo)


async def delete_queues(url: str, topo: QueueTopology) -> None:
    """Delete the queues of ``topo`` (ignores missing ones)."""
    conn = await aio_pika.connect(url)
    async with conn:
        for name in (topo.input_queue, topo.batch_queue, topo.dead_letter_queue):
            channel = await conn.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)


@dataclasses.dataclass
class Stack:
    """Gateways and processors started by one test."""

    rabbitmq_url: str
    topology: QueueTopology
    gateways: list[Gateway] = dataclasses.field(default_factory=list)
    processors: list[Processor] = dataclasses.field(default_factory=list)

    async def gateway(self, **overrides: Any) -> Gateway:
        """Start a gateway on a free port (``overrides`` go to GatewaySettings)."""
        settings = GatewaySettings(
            rabbitmq_url=self.rabbitmq_url,
            host="127.0.0.1",
            port=0,
            topology=self.topology,
            stats_interval=0.2,
            **overrides,
        )
        gw = Gateway(settings)
        await gw.start()
        self.gateways.append(gw)
        return gw

    async def processor(self, handler: str | Handler = "world", **overrides: Any) -> Processor:
        """Start an in-process processor consuming this test's queues."""
        fn = load_handler(handler) if isinstance(handler, str) else handler
        hooks = load_hooks(handler) if isinstance(handler, str) else None
        settings = ProcessorSettings(
            rabbitmq_url=self.rabbitmq_url, topology=self.topology, **overrides
        )
        proc = Processor(settings, fn, hooks)
        await proc.start()
        self.processors.append(proc)
        return proc

    async def batching_ready(self, gw: Gateway) -> None:
        """Wait until ``gw`` has seen the processors on the batch queue (auto mode)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not gw.broker.batching_active:
            assert loop.time() < deadline, "gateway never saw a batch consumer"
            await gw.broker.sample_queues()
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for gw in self.gateways:
            await gw.stop()
        for proc in self.processors:
            await proc.stop()


@pytest.fixture
async def stack(rabbitmq_url: str, topology: QueueTopology) -> AsyncIterator[Stack]:
    """A factory for gateways and processors on this test's queues, all stopped afterwards."""
    s = Stack(rabbitmq_url, topology)
    yield s
    await s.close()


def ws_url(gw: Gateway) -> str:
    return f"ws://127.0.0.1:{gw.port}/ws"


def http_url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


AsyncFactory = Callable[..., Awaitable[Any]]
