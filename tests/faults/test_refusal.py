"""Fault 4: the broker refuses work. A full input queue (``x-max-length`` with
``x-overflow=reject-publish``) makes excess requests fail at once with ``busy``; a memory
alarm makes publishes fail fast while replies already queued are still delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess

from hopline.broker_node import PrivateBroker
from hopline.wire.amqp import QueueTopology
from hopline.wire.liveness import is_blocked
from tests.conftest import Stack, ws_url
from tests.faults.ledger import Ledger, drive
from tests.faults.proxy import TCPProxy
from tests.helpers import eventually

TIMEOUT = 3.0
ALARM_TIMEOUT = 6.0  # room for rabbitmqctl (~1 s) between a request and its reply


async def test_full_queue_answers_busy_at_once(stack: Stack, topology: QueueTopology) -> None:
    """With 5 places in the queue and no processor, 5 requests wait and 15 get busy at once."""
    stack.topology = dataclasses.replace(topology, max_length=5)
    gw = await stack.gateway(request_timeout=TIMEOUT, batching="off")
    ledger = Ledger("queue full (max-length 5), no processor")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    client = asyncio.ensure_future(
        drive(ws_url(gw), ledger, "f", count=20, window=20, settle=TIMEOUT + 5)
    )
    await eventually(lambda: ledger.errors["busy"] == 15, message="15 busy answers")
    busy_after = loop.time() - t0
    await client
    print(f"[queue full] 15 busy answers within {busy_after:.3f} s")
    ledger.assert_complete()
    assert ledger.errors == {"busy": 15, "timeout": 5}
    assert busy_after < TIMEOUT, "busy came no sooner than the deadline"


def _watermark(node: PrivateBroker, value: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-n", node.nodename, "set_vm_memory_high_watermark", value],
        check=True,
        capture_output=True,
    )


class Held:
    """An async handler that answers nothing until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, payload: str | bytes) -> str | bytes:
        await self.release.wait()
        return payload


async def test_memory_alarm_fails_publishes_fast_and_still_delivers_queued_replies(
    private_broker: PrivateBroker, private_topology: QueueTopology
) -> None:
    """Under a memory alarm, replies already sent reach clients; new requests end promptly."""
    proxy = TCPProxy("127.0.0.1", private_broker.port)
    await proxy.start()
    stack = Stack(f"amqp://guest:guest@127.0.0.1:{proxy.port}/", private_topology)
    direct = Stack(private_broker.url, private_topology)
    try:
        gw = await stack.gateway(request_timeout=ALARM_TIMEOUT, batching="off")
        held = Held()
        proc = await direct.processor(held)
        url = ws_url(gw)

        queued = Ledger("memory alarm: replies queued before it")
        first = asyncio.ensure_future(drive(url, queued, "q", count=10, window=10, settle=20))
        await eventually(lambda: proc.in_progress == 10, message="ten requests being handled")
        assert len(proxy.links) == 2  # the gateway connects for publishing first, then consuming
        consuming = proxy.links[1]
        consuming.hold_downstream()  # the replies will wait in the broker and socket buffers
        held.release.set()
        await eventually(lambda: proc.in_progress == 0, message="ten replies published")
        await asyncio.to_thread(_watermark, private_broker, "0.0000001")
        try:
            trigger = Ledger("memory alarm: first publish")
            blocked = asyncio.ensure_future(
                drive(url, trigger, "t", count=1, settle=ALARM_TIMEOUT + 5)
            )
            await eventually(lambda: is_blocked(gw.broker._publish_conn), message="blocked")

            refused = Ledger("memory alarm: later publishes")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await drive(url, refused, "r", count=20, window=20, settle=ALARM_TIMEOUT + 5)
            elapsed = loop.time() - t0
            print(f"[memory alarm] 20 refused in {elapsed:.3f} s")

            consuming.restore()  # while publishing is blocked
            await first
            assert is_blocked(gw.broker._publish_conn)
            await blocked
        finally:
            await asyncio.to_thread(_watermark, private_broker, "0.4")
        queued.assert_complete()
        assert queued.replies == 10
        trigger.assert_complete()
        assert trigger.errors == {"timeout": 1}, "the publish that meets the alarm waits"
        refused.assert_complete()
        assert refused.errors == {"busy": 20}
        assert elapsed < ALARM_TIMEOUT, "refused requests waited for their deadline"

        await eventually(lambda: not is_blocked(gw.broker._publish_conn), message="unblocked")
        after = Ledger("memory alarm cleared")
        await drive(url, after, "a", count=5, window=5, settle=ALARM_TIMEOUT + 5)
        after.assert_complete()
        assert after.replies == 5
    finally:
        await stack.close()
        await direct.close()
        await proxy.close()
