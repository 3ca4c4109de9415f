"""The handler API (issue 12): threads for blocking handlers, context, refusals, hooks."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aio_pika
import pytest
from websockets.asyncio.client import connect

import hopline
from hopline.handler import BadRequest, Context
from processor.calls import shape_of
from processor.handlers import load_hooks
from tests.conftest import Stack, ws_url
from tests.faults.conftest import queue_counts, subprocess_env
from tests.helpers import eventually
from tests.processor import api_handlers
from tests.processor.test_processor import rpc_call

ROOT = Path(__file__).resolve().parents[2]


async def test_a_request_sent_during_a_blocking_call_is_not_delayed_by_it(stack: Stack) -> None:
    """A plain handler blocked in its thread does not hold up a later request's reply."""
    api_handlers.GATE.clear()
    gw = await stack.gateway(batching="off")
    await stack.processor(api_handlers.blocking)
    try:
        async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"id": 1, "data": "block"}))
            await asyncio.sleep(0)
            await ws.send(json.dumps({"id": 2, "data": "fast"}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first == {"id": 2, "data": "fast"}, "the blocked call held up another request"
            assert not api_handlers.GATE.is_set()
            api_handlers.GATE.set()
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"id": 1, "data": "block"}
    finally:
        api_handlers.GATE.set()


async def test_the_event_loop_keeps_running_while_handlers_block(stack: Stack) -> None:
    """While every slot's thread is blocked, the processor's loop still runs (heartbeats)."""
    api_handlers.GATE.clear()
    gw = await stack.gateway(batching="on")
    await stack.processor(api_handlers.blocking, concurrency=4)
    await stack.batching_ready(gw)
    try:
        async with connect(ws_url(gw)) as ws:
            for _ in range(4):
                await ws.send("block")
            ticks = 0
            start = time.monotonic()
            while time.monotonic() - start < 0.5:
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks >= 10, "the event loop was frozen by blocking handlers"
            api_handlers.GATE.set()
            assert [await asyncio.wait_for(ws.recv(), 10) for _ in range(4)] == ["block"] * 4
    finally:
        api_handlers.GATE.set()


async def test_context_is_passed_to_two_parameter_handlers(stack: Stack) -> None:
    """Correlation id, deadline, attempt, index and headers reach the handler, batched or not."""
    gw = await stack.gateway(batching="on")
    await stack.processor(api_handlers.with_context)
    await stack.batching_ready(gw)
    async with connect(ws_url(gw)) as ws:
        await ws.send("hi")
        assert await ws.recv() == (
            "hi corr=True attempt=1 index=0 deadline_ahead=True headers=True"
        )
    body, _ = await rpc_call(stack.rabbitmq_url, stack.topology.input_queue, b"bare")
    assert body == b"bare corr=True attempt=1 index=None deadline_ahead=False headers=False"


async def test_bad_request_refusal_reaches_the_client_with_its_message(stack: Stack) -> None:
    """BadRequest becomes bad_request with the handler's message; other errors processor_error."""
    gw = await stack.gateway()
    await stack.processor(api_handlers.refuse)
    await stack.batching_ready(gw)
    async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
        for i, data in enumerate(["bad", "crash", "fine"]):
            await ws.send(json.dumps({"id": i, "data": data}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
        frames.sort(key=lambda f: f["id"])
    assert frames[0] == {"id": 0, "error": {"code": "bad_request", "message": "say something"}}
    assert frames[1]["error"]["code"] == "processor_error"
    assert "KeyError" in frames[1]["error"]["message"]
    assert frames[2] == {"id": 2, "data": "fine"}
    body, headers = await rpc_call(stack.rabbitmq_url, stack.topology.input_queue, b"bad")
    assert (body, headers["x-hopline-error"]) == (b"say something", "bad_request")


def test_public_api_is_importable_from_the_package() -> None:
    """hopline.BadRequest is hopline.handler.BadRequest; one-parameter handlers stay one."""
    assert hopline.BadRequest is BadRequest
    assert hopline.Context is Context
    assert shape_of(api_handlers.blocking).takes_context is False
    assert shape_of(api_handlers.with_context).takes_context is True
    assert shape_of(api_handlers.blocking).kind == "sync"
    assert shape_of(api_handlers.refuse).kind == "async"


async def test_hooks_run_once_around_the_processor(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """startup() runs before consuming and shutdown() after the last reply, once each."""
    marker = tmp_path / "hooks.log"
    monkeypatch.setenv("HOPLINE_TEST_MARKER", str(marker))
    spec = "tests.processor.api_handlers:refuse"
    assert load_hooks(spec).startup is api_handlers.startup
    proc = await stack.processor(spec)
    assert marker.read_text() == "startup\n"
    body, _ = await rpc_call(stack.rabbitmq_url, stack.topology.input_queue, b"x")
    assert body == b"x"
    await proc.stop()
    stack.processors.remove(proc)
    lines = marker.read_text().splitlines()
    assert lines[0] == "startup" and lines[1].startswith("shutdown") and len(lines) == 2


async def test_failing_startup_exits_3_with_one_line_before_consuming(stack: Stack) -> None:
    """A startup() that raises: exit code 3, one line on stderr, nothing consumed."""
    topo = stack.topology
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hopline", "processor",
        "--rabbitmq-url", stack.rabbitmq_url,
        "--input-queue", topo.input_queue,
        "--handler", "tests.processor.api_handlers:refuse",
        cwd=ROOT,
        env=subprocess_env(HOPLINE_TEST_STARTUP="fail"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 3
    assert err.decode().splitlines() == [
        "hopline: error: handler startup failed: ConnectionError: "
        "database at db:5432 refused the connection"
    ]
    await stack.gateway()  # declares the queues: the processor never did
    assert (await queue_counts(stack.rabbitmq_url, topo.input_queue))[1] == 0


async def test_sigterm_does_not_wait_for_abandoned_blocking_calls(
    stack: Stack, tmp_path: Path
) -> None:
    """A 60 s blocking call abandoned at its 1 s deadline: SIGTERM exits 0 in seconds."""
    marker = tmp_path / "started"
    topo = stack.topology
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hopline", "-v", "processor",
        "--rabbitmq-url", stack.rabbitmq_url, "--input-queue", topo.input_queue,
        "--handler", "tests.processor.api_handlers:sleepy",
        cwd=ROOT, env=subprocess_env(HOPLINE_TEST_MARKER=str(marker)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while b"hopline processor ready" not in await proc.stderr.readline():
                pass
        conn = await aio_pika.connect(stack.rabbitmq_url)
        async with conn:
            channel = await conn.channel()
            deadline = int((time.time() + 1) * 1000)
            await channel.default_exchange.publish(
                aio_pika.Message(
                    b"x", reply_to="nobody", headers={"x-hopline-deadline-ms": deadline}
                ),
                routing_key=topo.input_queue,
            )
        await eventually(marker.exists, message="the handler started")
        proc.terminate()
        async with asyncio.timeout(15):  # the handler would block for 60 s
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert b"abandoned handler calls still run in threads; not waiting" in err
