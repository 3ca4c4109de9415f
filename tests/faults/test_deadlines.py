"""Fault 5, deadlines: a request nobody answers gets ``timeout`` at its deadline, and no
processor works on it afterwards (AMQP expiration in the broker, the deadline header in
the processor)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, ws_url
from tests.faults.conftest import ProcessorProcess, queue_counts, spawn_processor, subprocess_env
from tests.faults.ledger import Ledger, drive
from tests.helpers import eventually

TIMEOUT = 1.0


class Recorder:
    """An async handler that records every payload; 'hold' waits until released."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, payload: str | bytes) -> str | bytes:
        self.seen.append(str(payload))
        if payload == "hold":
            await self.release.wait()
        return payload


async def test_request_held_behind_a_busy_processor_times_out_and_is_never_handled(
    stack: Stack,
) -> None:
    """Requests delivered to a busy processor past their deadline get timeout and never run."""
    gw = await stack.gateway(request_timeout=TIMEOUT, batching="off")
    recorder = Recorder()
    proc = await stack.processor(recorder, prefetch=8, concurrency=1)
    loop = asyncio.get_running_loop()
    ledger = Ledger("deadline, busy processor")
    t0 = loop.time()
    client = asyncio.ensure_future(
        drive(
            ws_url(gw),
            ledger,
            "d",
            count=6,
            window=6,
            payload=lambda cid: "hold" if cid == "d-0" else cid,
            settle=TIMEOUT + 5,
        )
    )
    await eventually(lambda: proc.in_progress == 6, message="all six delivered to the processor")
    await client
    waited = loop.time() - t0
    recorder.release.set()
    await eventually(lambda: proc.in_progress == 0, message="processor done with the six")
    ledger.assert_complete()
    assert ledger.errors == {"timeout": 6}
    assert waited >= TIMEOUT
    assert recorder.seen == ["hold"], "a request ran after its deadline"


async def test_request_queued_past_its_deadline_expires_in_the_broker(
    stack: Stack, rabbitmq_url: str, topology: QueueTopology
) -> None:
    """With no processor, requests time out and expire in the queue; a late processor sees none."""
    gw = await stack.gateway(request_timeout=TIMEOUT, batching="off")
    ledger = Ledger("deadline, no processor")
    await drive(ws_url(gw), ledger, "q", count=5, window=5, settle=TIMEOUT + 5)
    ledger.assert_complete()
    assert ledger.errors == {"timeout": 5}

    async def queue_empty() -> bool:
        ready, _ = await queue_counts(rabbitmq_url, topology.input_queue)
        return ready == 0

    await eventually(queue_empty, message="expired requests removed from the queue")
    recorder = Recorder()
    await stack.processor(recorder)
    after = Ledger("deadline, processor back")
    await drive(ws_url(gw), after, "late", count=1, settle=TIMEOUT + 5)
    after.assert_complete()
    assert after.replies == 1
    assert recorder.seen == ["late-0"], "an expired request reached the processor"


async def test_batch_items_left_at_the_deadline_are_skipped(
    stack: Stack,
    rabbitmq_url: str,
    topology: QueueTopology,
    tmp_path: Path,
    processes: list[ProcessorProcess],
) -> None:
    """A batch handled item by item (one slot) stops at its deadline: later items never run.

    Those that ended in time got their reply at once (early answers), the others timeout.
    """
    gw = await stack.gateway(request_timeout=TIMEOUT, batching="on")
    trace = tmp_path / "handled.log"
    env = subprocess_env(HOPLINE_FAULTS_LOG=str(trace), HOPLINE_FAULTS_DELAY="0.3")
    proc = await spawn_processor(
        rabbitmq_url,
        topology,
        "tests.faults.handlers:sync_slow_echo",
        tmp_path,
        "--concurrency",
        "1",
        env=env,
    )
    processes.append(proc)

    async def consuming() -> bool:
        return (await queue_counts(rabbitmq_url, topology.batch_queue))[1] == 1

    await eventually(consuming, timeout=20, message="processor consuming")
    ledger = Ledger("deadline, one batch of 10 items of 0.3 s")
    await drive(ws_url(gw), ledger, "b", count=10, window=10, settle=TIMEOUT + 5)
    ledger.assert_complete()
    proc.terminate()
    assert await proc.wait() == 0
    ran = trace.read_text().splitlines()
    print(f"[deadline, batch] {len(ran)} of 10 items ran before the deadline")
    assert 1 <= len(ran) <= TIMEOUT / 0.3 + 1, "items ran after the batch deadline"
    # Items that ended before the deadline were answered early; the rest timed out.
    assert ledger.errors == {"timeout": 10 - ledger.replies}
    assert 1 <= ledger.replies <= len(ran)
