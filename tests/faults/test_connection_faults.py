"""Fault 3: the gateway-broker connection is cut or slowed (through a TCP proxy). Publishes
never hang beyond the request deadline; a silent connection is noticed within about twice
the heartbeat interval (``?heartbeat=N`` in the AMQP URL), and the gateway reconnects."""

from __future__ import annotations

import asyncio
from collections import Counter

from gateway.server import Gateway
from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, http_url, ws_url
from tests.faults.ledger import Ledger, drive
from tests.faults.proxy import TCPProxy
from tests.helpers import eventually, http_get

HEARTBEAT = 2
MARGIN = 0.5  # event-loop and polling slack on a busy 2-core box


async def _health(gw: Gateway) -> int:
    return (await http_get(http_url(gw, "/health"))).status


async def _proxied_gateway(
    proxy: TCPProxy, topology: QueueTopology, timeout: float
) -> tuple[Stack, Gateway]:
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat={HEARTBEAT}"
    stack = Stack(url, topology)
    return stack, await stack.gateway(request_timeout=timeout)


async def test_cut_connection_is_detected_within_two_heartbeats_and_nothing_hangs(
    stack: Stack, topology: QueueTopology, proxy: TCPProxy
) -> None:
    """A silent partition: /health 503 within ~2 heartbeats, requests end by their deadline."""
    timeout = 3.0
    await stack.processor("echo")
    via_proxy, gw = await _proxied_gateway(proxy, topology, timeout)
    try:
        await via_proxy.batching_ready(gw)
        ledger = Ledger("connection cut")
        stop = asyncio.Event()
        clients = [
            asyncio.ensure_future(
                drive(ws_url(gw), ledger, f"c{i}", stop=stop, pace=0.01, settle=timeout + 5)
            )
            for i in range(2)
        ]
        await eventually(lambda: ledger.replies >= 100, message="load running")
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        proxy.cut()
        await eventually(lambda: _health_is(gw, 503), timeout=5 * HEARTBEAT, message="cut detected")
        detected = loop.time() - cut_at
        refused = ledger.errors["unavailable"]
        await eventually(
            lambda: ledger.errors["unavailable"] > refused + 10, message="fail fast while cut"
        )
        proxy.restore()
        await eventually(lambda: _health_is(gw, 200), timeout=20, message="reconnected")
        resumed = ledger.replies
        await eventually(lambda: ledger.replies >= resumed + 100, message="traffic after restore")
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await via_proxy.close()
    print(
        f"[connection cut] heartbeat {HEARTBEAT} s: detected after {detected:.2f} s; "
        f"slowest answer {ledger.max_latency:.2f} s (deadline {timeout:g} s)"
    )
    ledger.assert_complete()
    assert set(ledger.errors) <= {"timeout", "unavailable"}
    assert ledger.max_latency <= timeout + MARGIN, "a request outlived its deadline"
    assert detected <= 2 * HEARTBEAT + MARGIN


async def test_slow_connection_stays_up_and_requests_end_by_their_deadline(
    stack: Stack, topology: QueueTopology, proxy: TCPProxy
) -> None:
    """With 0.3 s added each way, the link is kept; requests end in a reply or at the deadline."""
    timeout = 2.0
    await stack.processor("echo")
    via_proxy, gw = await _proxied_gateway(proxy, topology, timeout)
    statuses: Counter[int] = Counter()
    try:
        await via_proxy.batching_ready(gw)
        proxy.slow(0.3)

        async def watch_health() -> None:
            while True:
                statuses[await _health(gw)] += 1
                await asyncio.sleep(0.1)

        watcher = asyncio.ensure_future(watch_health())
        slow = Ledger("connection slowed 0.3 s each way")
        await asyncio.gather(
            *(
                drive(ws_url(gw), slow, f"s{i}", count=100, pace=0.01, settle=timeout + 5)
                for i in range(2)
            )
        )
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        proxy.restore()
        after = Ledger("connection restored")
        await drive(ws_url(gw), after, "a", count=50, settle=timeout + 5)
    finally:
        await via_proxy.close()
    print(
        f"[connection slowed] slowest answer {slow.max_latency:.2f} s (deadline {timeout:g} s), "
        f"/health {dict(statuses)}"
    )
    slow.assert_complete()
    assert set(slow.errors) <= {"timeout"}
    assert slow.replies > 0
    assert slow.max_latency <= timeout + MARGIN, "a request outlived its deadline"
    assert set(statuses) == {200}, "a slow but live link was declared dead"
    after.assert_complete()
    assert after.replies == 50


async def _health_is(gw: Gateway, status: int) -> bool:
    return await _health(gw) == status
