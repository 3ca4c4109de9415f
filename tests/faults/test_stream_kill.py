"""Processors SIGKILLed mid-stream: every streamed request ends in its complete reply or in
one error frame, never in a truncated reply that looks complete."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import connect

from hopline.wire.amqp import QueueTopology
from tests.conftest import Stack, ws_url
from tests.faults.conftest import ProcessorProcess, queue_counts, spawn_processor, subprocess_env
from tests.faults.handlers import STREAM_CHUNKS
from tests.helpers import eventually

REQUESTS_PER_CLIENT = 40


async def stream_client(
    url: str, name: str, outcomes: dict[str, str], started: set[str], window: int = 4
) -> None:
    """Send streamed requests; record 'complete', '<error code>' or a failure description."""
    frames: dict[str, list[dict]] = {}
    async with connect(url, subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
        slots = asyncio.Semaphore(window)

        async def read() -> None:
            while len(outcomes_of_mine()) < REQUESTS_PER_CLIENT:
                frame = json.loads(await ws.recv())
                rid = frame["id"]
                if rid in outcomes:
                    outcomes[rid] = f"frame after the end: {frame}"
                    continue
                frames.setdefault(rid, []).append(frame)
                if frame.get("more"):
                    started.add(rid)
                    continue
                outcomes[rid] = judge(rid, frames[rid])
                slots.release()

        def outcomes_of_mine() -> list[str]:
            return [k for k in outcomes if k.startswith(name)]

        reader = asyncio.ensure_future(read())
        for n in range(REQUESTS_PER_CLIENT):
            await slots.acquire()
            await ws.send(json.dumps({"id": f"{name}-{n}", "data": f"{name}-{n}"}))
        async with asyncio.timeout(60):
            await reader


def judge(rid: str, frames: list[dict]) -> str:
    """What the client saw for one request, ended by its last frame."""
    last = frames[-1]
    if "error" in last:
        return last["error"]["code"]
    text = "".join(f["data"] for f in frames)
    expected = "".join(f"{rid}:{i}," for i in range(STREAM_CHUNKS))
    if len(frames) != STREAM_CHUNKS:
        return f"not streamed: {len(frames)} frames"
    return "complete" if text == expected else f"TRUNCATED or mixed reply: {text!r}"


async def test_sigkill_mid_stream_ends_each_request_complete_or_in_one_error(
    stack: Stack,
    rabbitmq_url: str,
    topology: QueueTopology,
    tmp_path: Path,
    processes: list[ProcessorProcess],
) -> None:
    """Twice, a processor streaming replies is SIGKILLed; nothing is truncated or lost."""
    gw = await stack.gateway(request_timeout=20.0)
    trace = tmp_path / "t.log"
    env = subprocess_env(HOPLINE_FAULTS_DELAY="0.02", HOPLINE_FAULTS_LOG=str(trace))

    async def start() -> ProcessorProcess:
        proc = await spawn_processor(
            rabbitmq_url, topology, "tests.faults.handlers:slow_words", tmp_path,
            "--prefetch", "4", env=env,
        )  # fmt: skip
        processes.append(proc)
        return proc

    live = [await start() for _ in range(2)]

    async def consumers(n: int) -> bool:
        return (await queue_counts(rabbitmq_url, topology.batch_queue))[1] == n

    await eventually(lambda: consumers(2), timeout=20, message="two processors consuming")
    await stack.batching_ready(gw)
    outcomes: dict[str, str] = {}
    started: set[str] = set()  # requests whose client has seen a chunk
    clients = [
        asyncio.ensure_future(stream_client(ws_url(gw), f"c{i}", outcomes, started))
        for i in range(4)
    ]

    def streaming_now() -> ProcessorProcess | None:
        """A live processor streaming a request whose client has seen chunks (by the trace)."""
        busy = set()
        for line in trace.read_text().splitlines() if trace.exists() else []:
            pid, _, payload = line.partition(" ")
            if payload in started and payload not in outcomes:
                busy.add(int(pid))
        return next((p for p in live if p.pid in busy), None)

    for kill in range(2):
        target = (kill + 1) * 40
        await eventually(lambda t=target: len(outcomes) >= t, timeout=30, message="progress")
        await eventually(lambda: streaming_now() is not None, timeout=30, message="a stream")
        victim = streaming_now()
        assert victim is not None
        live.remove(victim)
        victim.kill()
        assert await victim.wait() == -9
        live.append(await start())
    try:
        await asyncio.gather(*clients)
    finally:
        for c in clients:
            c.cancel()
            with contextlib.suppress(BaseException):
                await c
    counts = Counter(
        o if not o.startswith(("TRUNC", "frame")) else "BAD" for o in outcomes.values()
    )
    print(f"[stream SIGKILL x2] {dict(counts)}")
    bad = [f"{k}: {v}" for k, v in outcomes.items() if v not in ("complete", "processor_error")]
    assert not bad, bad[:5]
    assert len(outcomes) == 4 * REQUESTS_PER_CLIENT, "a request got no end"
    assert counts["processor_error"] > 0, (
        "no kill hit a stream in progress: the test proved nothing"
    )
