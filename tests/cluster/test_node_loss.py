"""A real 3-node cluster under 250 req/s loses a node: every request is accounted for.

Two gateways (125 req/s each, one ``hopline.v1`` socket each) on different nodes,
three processors spread over the three nodes, a quorum input queue whose leader the
test places. Each scenario checks its per-request ledgers: no request lost, none
answered twice, no ``timeout`` (a lost reply would end as one), errors only
``unavailable``, and service back within 5 s of the fault (no request sent more
than 5 s after it failed). Afterwards the node is restarted and both gateways serve
without a single error.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from gateway.server import Gateway
from tests.cluster.conftest import HEARTBEAT, Scene
from tests.cluster.load import Timeline, paced
from tests.faults.ledger import Ledger
from tests.helpers import eventually, http_get

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

RATE = 125.0  # requests per second per gateway: 250 in all
RECOVERY = 5.0  # seconds: the longest a gateway may answer anything but replies


def ws(gw: Gateway) -> str:
    return f"ws://127.0.0.1:{gw.port}/ws"


def health_url(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.port}/health"


async def spread(scene: Scene, leader: int, gateway_nodes: tuple[int, int]) -> list[Gateway]:
    """Leader on ``leader``, processors on nodes 0, 1, 2, gateways on ``gateway_nodes``."""
    await scene.place_leader(leader)
    for node in range(3):
        await scene.processor(node)
    gateways = [await scene.gateway(node) for node in gateway_nodes]
    await eventually(scene_consumers(scene, 3), timeout=60, interval=0.5, message="3 processors")
    nodes = await asyncio.to_thread(scene.cluster.connection_nodes, "hopline-processor")
    assert sorted(nodes) == sorted(n.name for n in scene.cluster.nodes), nodes
    for gw in gateways:
        await eventually(lambda gw=gw: gw.broker.batching_active, message="batching")
    return gateways


def scene_consumers(scene: Scene, count: int) -> Callable[[], Awaitable[bool]]:
    async def enough() -> bool:
        try:
            return await scene.consumers() >= count
        except Exception:
            return False

    return enough


async def under_load(
    gateways: list[Gateway], fault: Callable[[], Awaitable[float]], after: float
) -> tuple[list[Timeline], float]:
    """Load every gateway, run ``fault`` (it returns its moment) after 3 s, go on ``after`` s."""
    stop = asyncio.Event()
    timelines = [Timeline(Ledger(f"gateway {i}")) for i in range(len(gateways))]
    drivers = [
        asyncio.ensure_future(paced(ws(gw), tl, f"g{i}", RATE, stop, settle=40))
        for i, (gw, tl) in enumerate(zip(gateways, timelines, strict=True))
    ]
    loop = asyncio.get_running_loop()
    await asyncio.wait(drivers, timeout=3)
    at = await fault()
    done, _ = await asyncio.wait(drivers, timeout=max(after - (loop.time() - at), 0))
    assert not done, "a load driver ended early (socket closed?)"
    stop.set()
    await asyncio.gather(*drivers)
    return timelines, at


def check(timeline: Timeline, fault_at: float, *, errors_allowed: bool) -> None:
    ledger = timeline.ledger
    ledger.assert_complete()
    assert "timeout" not in ledger.errors, ledger.summary()
    assert set(ledger.errors) <= ({"unavailable"} if errors_allowed else set()), ledger.summary()
    outage = timeline.outage_after(fault_at)
    print(f"[{ledger.name}] last failure {outage:.2f} s after the fault")
    assert outage < RECOVERY, timeline.failed_since(fault_at)[-5:]


async def all_serve(scene: Scene, gateways: list[Gateway]) -> None:
    """After the node's restart: both gateways answer 2 s of load without an error."""
    await asyncio.to_thread(scene.cluster.wait_clustered, 120)
    await eventually(scene_consumers(scene, 3), timeout=60, interval=0.5, message="3 processors")
    for gw in gateways:
        await eventually(lambda gw=gw: gw.broker.connected, message="gateway connected")
    stop = asyncio.Event()
    timelines = [Timeline(Ledger(f"after restart, gateway {i}")) for i in range(len(gateways))]
    drivers = [
        asyncio.ensure_future(paced(ws(gw), tl, f"r{i}", RATE, stop))
        for i, (gw, tl) in enumerate(zip(gateways, timelines, strict=True))
    ]
    await asyncio.wait(drivers, timeout=2)
    stop.set()
    await asyncio.gather(*drivers)
    for tl in timelines:
        tl.ledger.assert_complete()
        assert not tl.ledger.errors, tl.ledger.summary()


async def restart(scene: Scene, index: int) -> None:
    node = scene.cluster.nodes[index]
    await asyncio.to_thread(node.kill)
    await asyncio.to_thread(node.start)
    await asyncio.to_thread(node.wait_serving, 120)


async def test_sigkill_of_a_gateways_node(scene: Scene) -> None:
    """The gateway on the killed node serves again through another within 5 s; the other
    gateway does not notice."""
    gateways = await spread(scene, leader=2, gateway_nodes=(0, 1))
    node = scene.cluster.nodes[0]
    loop = asyncio.get_running_loop()

    async def kill() -> float:
        at = loop.time()
        await asyncio.to_thread(node.kill)
        return at

    (affected, other), at = await under_load(gateways, kill, after=12)
    check(affected, at, errors_allowed=True)
    check(other, at, errors_allowed=False)
    await restart(scene, 0)
    await all_serve(scene, gateways)


async def test_sigkill_of_the_quorum_leaders_node(scene: Scene) -> None:
    """A new leader is elected; meanwhile errors are 'unavailable' only, for under 5 s."""
    gateways = await spread(scene, leader=0, gateway_nodes=(1, 2))
    node = scene.cluster.nodes[0]
    management = ",".join(n.management_url for n in scene.cluster.nodes)
    watcher = await scene.gateway(1, management_url=management)  # no load: /stats only
    await eventually(
        lambda: stats_show(watcher, scene, "quorum", node.name),
        timeout=20,
        interval=0.5,
        message="/stats: quorum, leader on node 0",
    )
    loop = asyncio.get_running_loop()

    async def kill() -> float:
        at = loop.time()
        await asyncio.to_thread(node.kill)
        return at

    timelines, at = await under_load(gateways, kill, after=12)
    for tl in timelines:
        check(tl, at, errors_allowed=True)
    leader = await asyncio.to_thread(scene.cluster.queue_leader, scene.topology.input_queue)
    assert leader is not node
    await eventually(
        lambda: stats_show(watcher, scene, "quorum", leader.name),
        timeout=20,
        interval=0.5,
        message="/stats: the new leader",
    )
    await restart(scene, 0)
    await all_serve(scene, gateways)


async def test_partition_of_a_gateways_node(scene: Scene) -> None:
    """20 s partition: /health 503 within 2 heartbeats, requests 'unavailable' at once rather
    than timing out, serving again within 5 s of the heal; then a full restart of the node."""
    gateways = await spread(scene, leader=2, gateway_nodes=(0, 1))
    affected_gw = gateways[0]
    node = scene.cluster.nodes[0]
    network = scene.cluster.network
    loop = asyncio.get_running_loop()
    unhealthy_after: list[float] = []

    async def watch_health(since: float) -> None:
        while True:
            response = await http_get(health_url(affected_gw), timeout=5)
            if response.status == 503:
                unhealthy_after.append(loop.time() - since)
                return
            await asyncio.sleep(0.1)

    async def cut() -> float:
        at = loop.time()
        await asyncio.to_thread(network.cut, node.host)
        watcher = asyncio.ensure_future(watch_health(at))
        await asyncio.wait({watcher}, timeout=4 * HEARTBEAT)
        watcher.cancel()
        return at

    (affected, other), at = await under_load(gateways, cut, after=20)
    healed_at = loop.time()
    await asyncio.to_thread(network.heal, node.host)
    print(f"[partition] /health 503 after {unhealthy_after} s")
    assert unhealthy_after and unhealthy_after[0] <= 2 * HEARTBEAT, unhealthy_after
    affected.ledger.assert_complete()
    assert set(affected.ledger.errors) <= {"unavailable"}, affected.ledger.summary()
    failures = [cid for cid, o in affected.ledger.outcomes.items() if o[0] != "reply"]
    slowest = max((affected.ledger.latency[c] for c in failures), default=0.0)
    outage = affected.outage_after(at)
    print(
        f"[partition] {len(failures)} unavailable, each within {slowest:.2f} s; "
        f"last failure {outage:.2f} s after the cut (heal at {healed_at - at:.2f} s)"
    )
    assert slowest <= 2 * HEARTBEAT + 1, "failures came late"
    # Serving again within 5 s of the heal at the latest. (Through another node it comes
    # sooner: once the majority has declared the cut node down, net_ticktime 10 s, it
    # can create the gateway's new reply queue; see docs/cluster.md.)
    assert affected.outage_after(healed_at) < RECOVERY
    # The other gateway's requests held by the cut node's processor come back
    # (redelivered) but none is lost or timed out.
    other.ledger.assert_complete()
    assert not other.ledger.errors, other.ledger.summary()
    await asyncio.to_thread(scene.cluster.wait_clustered, 120)
    await restart(scene, 0)
    await all_serve(scene, gateways)


async def test_classic_queue_on_a_dead_node_makes_health_503(scene: Scene) -> None:
    """A classic input queue whose node is down cannot be served: /health says so."""
    scene.topology = dataclasses.replace(scene.topology, queue_type="classic")
    await scene.place_leader(1)  # the classic queue lives on node 1
    management = ",".join(node.management_url for node in scene.cluster.nodes)
    gw = await scene.gateway(0, management_url=management)
    await scene.processor(0)
    await eventually(scene_consumers(scene, 1), timeout=60, interval=0.5, message="processor")
    await eventually(
        lambda: stats_show(gw, scene, "classic", scene.cluster.nodes[1].name),
        timeout=20,
        interval=0.5,
        message="/stats: type and leader from the management API",
    )

    async def health() -> tuple[int, str]:
        doc = await http_get(health_url(gw), timeout=5)
        return doc.status, doc.json()["input_queue"]

    await eventually(lambda: _is(health, 200), message="healthy")
    await asyncio.to_thread(scene.cluster.nodes[1].kill)
    await eventually(lambda: _is(health, 503), timeout=10, message="503 after the kill")
    status, reason = await health()
    print(f"[classic queue, node down] /health {status}: {reason}")
    assert "unreachable" in reason
    await restart(scene, 1)
    await eventually(lambda: _is(health, 200), timeout=30, message="healthy again")


async def stats_show(gw: Gateway, scene: Scene, queue_type: str, leader: str) -> bool:
    """Whether /stats reports the input queue's type and leader node (management API)."""
    doc = (await http_get(f"http://127.0.0.1:{gw.port}/stats", timeout=5)).json()
    items = {item["name"]: item for item in doc["queues"]["items"]}
    item = items.get(scene.topology.input_queue, {})
    return doc["queues"]["source"] == "management" and (item.get("type"), item.get("leader")) == (
        queue_type,
        leader,
    )


async def _is(health: Callable[[], Awaitable[tuple[int, str]]], status: int) -> bool:
    return (await health())[0] == status
