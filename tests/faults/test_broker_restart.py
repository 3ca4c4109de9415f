"""Fault 2: the broker restarts mid-load. Gateway and processors reconnect with their
consumers really back; requests in flight end in a reply or an explicit ``unavailable`` /
``timeout``, never silence; /health is 503 while the broker is down and 200 after."""

from __future__ import annotations

import asyncio

import pytest

from hopline.broker_node import PrivateBroker
from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, http_url, ws_url
from tests.faults.conftest import queue_counts
from tests.faults.ledger import Ledger, drive
from tests.helpers import eventually, http_get

TIMEOUT = 5.0


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_broker_restart_mid_load_loses_nothing_and_consumers_come_back(
    how: str, private_broker: PrivateBroker, private_topology: QueueTopology
) -> None:
    """Stop (or SIGKILL) and restart the node under load: all answered, traffic resumes."""
    url = private_broker.url
    stack = Stack(url, private_topology)
    try:
        gw = await stack.gateway(request_timeout=TIMEOUT)
        await stack.processor("echo")
        await stack.processor("echo")
        await stack.batching_ready(gw)

        async def health() -> int:
            return (await http_get(http_url(gw, "/health"))).status

        ledger = Ledger(f"broker {how} + restart")
        stop = asyncio.Event()
        clients = [
            asyncio.ensure_future(
                drive(ws_url(gw), ledger, f"c{i}", stop=stop, pace=0.02, settle=TIMEOUT + 5)
            )
            for i in range(3)
        ]
        await eventually(lambda: ledger.replies >= 100, message="load running")
        assert await health() == 200

        await asyncio.to_thread(private_broker.stop if how == "stop" else private_broker.kill)
        await eventually(lambda: _is(health, 503), message="/health 503 while the broker is down")
        down_errors = sum(ledger.errors.values())
        await eventually(
            lambda: sum(ledger.errors.values()) > down_errors + 10,
            message="requests refused while down",
        )
        replies_while_down = ledger.replies

        await asyncio.to_thread(private_broker.start)
        await eventually(lambda: _is(health, 200), timeout=30, message="/health 200 after")
        for queue in (private_topology.input_queue, private_topology.batch_queue):
            await eventually(
                lambda q=queue: _consumers(url, q, 2), timeout=30, message=f"consumers of {queue}"
            )
        resumed_at = ledger.replies
        await eventually(
            lambda: ledger.replies >= resumed_at + 100, timeout=20, message="traffic after restart"
        )
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await stack.close()
    print(
        f"[broker {how} + restart] {ledger.replies - replies_while_down} replies after restart, "
        f"{gw.metrics.total('hopline_dropped_replies_total')} late replies dropped"
    )
    ledger.assert_complete()
    assert set(ledger.errors) <= {"unavailable", "timeout"}


async def _is(probe, expected: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        return await probe() == expected
    except OSError:
        return False


async def _consumers(url: str, queue: str, expected: int) -> bool:
    try:
        return (await queue_counts(url, queue))[1] == expected
    except Exception:
        return False
