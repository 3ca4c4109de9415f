"""Fixtures for the cluster tests: one real 3-node RabbitMQ cluster, gateways, processors.

The tests in this package are marked ``cluster`` and left out of the default
``pytest`` run (they need root and take minutes); CI runs them as their own stage
(``pytest -m cluster tests/cluster``, see ``.ci/run``). Without root or RabbitMQ
they fail, they do not skip.

One cluster serves the whole package (it takes ~20 s to form). Each test builds its
:class:`Scene` (a fresh quorum queue whose leader it places, gateways and processors
pinned to chosen nodes with ``--rabbitmq-order listed``) and leaves every node
running, uncut and clustered again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.wire.amqp import QueueTopology
from tests.cluster.rabbit import RabbitCluster
from tests.faults.conftest import ProcessorProcess, spawn_processor

HEARTBEAT = 2  # seconds: the AMQP heartbeat the clients ask for (watchdogs act on it)


@pytest.fixture(scope="package")
def cluster() -> Iterator[RabbitCluster]:
    """Three clustered RabbitMQ nodes in their own network namespaces."""
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (network namespaces)", pytrace=False)
    if shutil.which("rabbitmq-server") is None and not Path("/usr/sbin/rabbitmq-server").exists():
        pytest.fail("the cluster tests need rabbitmq-server installed", pytrace=False)
    with RabbitCluster() as c:
        yield c


def urls_from(cluster: RabbitCluster, first: int) -> str:
    """Every node's URL, node ``first`` first (for ``--rabbitmq-order listed``)."""
    n = len(cluster.nodes)
    order = [cluster.nodes[(first + i) % n] for i in range(n)]
    return ",".join(f"{node.url}?heartbeat={HEARTBEAT}" for node in order)


@dataclass
class Scene:
    """One test's queue, gateways and processors on the shared cluster."""

    cluster: RabbitCluster
    topology: QueueTopology
    log_dir: Path
    gateways: list[Gateway] = field(default_factory=list)
    processors: list[ProcessorProcess] = field(default_factory=list)

    async def place_leader(self, index: int) -> None:
        """Declare the queues through node ``index`` so the quorum leader lives there."""
        conn = await aio_pika.connect(self.cluster.nodes[index].url)
        async with conn:
            await self.topology.declare(await conn.channel())
        leader = await asyncio.to_thread(self.cluster.queue_leader, self.topology.input_queue)
        assert leader is self.cluster.nodes[index], f"leader on {leader.name}"

    async def gateway(self, node: int, **overrides: object) -> Gateway:
        """A gateway in this process, connected first to node ``node``."""
        settings = GatewaySettings(
            rabbitmq_url=urls_from(self.cluster, node),
            rabbitmq_order="listed",
            host="127.0.0.1",
            port=0,
            topology=self.topology,
            stats_interval=0.5,
            **overrides,  # type: ignore[arg-type]
        )
        gw = Gateway(settings)
        await gw.start()
        self.gateways.append(gw)
        return gw

    async def processor(self, node: int) -> ProcessorProcess:
        """A ``hopline processor`` subprocess connected first to node ``node``."""
        proc = await spawn_processor(
            urls_from(self.cluster, node),
            self.topology,
            "echo",
            self.log_dir,
            "--rabbitmq-order",
            "listed",
        )
        self.processors.append(proc)
        return proc

    async def consumers(self) -> int:
        """Consumers on the batch queue, as the management API reports them."""
        doc = await asyncio.to_thread(
            self.cluster.management_get, f"queues/%2F/{self.topology.batch_queue}"
        )
        assert isinstance(doc, dict)
        return int(doc.get("consumers") or 0)

    async def close(self) -> None:
        for gw in self.gateways:
            with contextlib.suppress(Exception):
                await gw.stop()
        for proc in self.processors:
            if proc.proc.returncode is None:
                proc.terminate()
                try:
                    await proc.wait(15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@pytest.fixture
async def scene(cluster: RabbitCluster, tmp_path: Path) -> AsyncIterator[Scene]:
    """A fresh quorum queue and room for gateways and processors; the cluster whole after."""
    topology = QueueTopology(input_queue=f"cl-{uuid.uuid4().hex[:10]}", queue_type="quorum")
    s = Scene(cluster, topology, tmp_path)
    try:
        yield s
    finally:
        await s.close()
        await asyncio.to_thread(restore, cluster)
        with contextlib.suppress(Exception):
            conn = await aio_pika.connect(cluster.urls[0])
            async with conn:
                for name in (topology.input_queue, topology.batch_queue):
                    channel = await conn.channel()
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(name)


def restore(cluster: RabbitCluster) -> None:
    """Heal every cut, start every stopped node, wait until all three run as one cluster."""
    for node in cluster.nodes:
        cluster.network.heal(node.host)
    for node in cluster.nodes:
        if not node.serving():
            if node.beam_pid() is not None:
                with contextlib.suppress(Exception):
                    node.kill()
            node.start()
    for node in cluster.nodes:
        node.wait_serving(120)
    cluster.wait_clustered(120)
