"""Pilot tests of `hopline tui` against a real gateway, processor and RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import jwt
from textual.pilot import Pilot
from textual.widgets import Static
from websockets.asyncio.client import connect

from gateway.server import Gateway
from hopline.broker_node import free_port
from tests.conftest import Stack, ws_url
from tests.helpers import eventually
from tui.app import HoplineApp
from tui.config import TuiSettings
from tui.format import middle_truncate
from tui.widgets.chat import EntryView
from tui.widgets.queues import NAME_WIDTH

SIZE = (80, 24)


@asynccontextmanager
async def running(url: str, **overrides: object) -> AsyncIterator[tuple[HoplineApp, Pilot]]:
    """The TUI connected to ``url`` in a headless 80x24 terminal."""
    settings = TuiSettings(url=url, stats_interval=0.2, max_backoff=0.5, **overrides)  # type: ignore[arg-type]
    app = HoplineApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        yield app, pilot


def text_of(app: HoplineApp, selector: str) -> str:
    """Plain text of every Static matching ``selector``, one per line."""
    return "\n".join(str(w.content) for w in app.query(selector).results(Static))


def chat_text(app: HoplineApp) -> str:
    return "\n".join(str(view.content) for view in app.query(EntryView).results())


async def until(predicate: Callable[[], bool], message: str, timeout: float = 10.0) -> None:
    await eventually(predicate, timeout=timeout, message=message)


async def test_hello_enter_shows_hello_world_with_rtt(stack: Stack) -> None:
    """Typing hello and Enter shows 'hello world' under the request with its round-trip time."""
    gw = await stack.gateway()
    await stack.processor()
    async with running(ws_url(gw)) as (app, pilot):
        await until(lambda: app.connection.state == "connected", "connected")
        await pilot.press(*"hello", "enter")
        await until(lambda: "hello world" in chat_text(app), "reply shown")
        lines = chat_text(app).splitlines()
        assert lines[0].endswith("\u203a hello")
        assert "\u2039 hello world" in lines[1] and lines[1].endswith(" ms")
        assert app.input.value == ""
        assert "1 in 30 s" in text_of(app, "#latency-numbers")


async def test_outstanding_requests_each_get_their_own_reply(stack: Stack) -> None:
    """Three requests typed before any reply each land under their own request."""
    gw = await stack.gateway()
    release = asyncio.Event()

    async def held(payload: str | bytes) -> str | bytes:
        await release.wait()
        return f"{payload!s}!"

    await stack.processor(held)
    async with running(ws_url(gw)) as (app, pilot):
        await until(lambda: app.connection.state == "connected", "connected")
        for word in ("one", "two", "three"):
            await pilot.press(*word, "enter")
        await until(lambda: chat_text(app).count("waiting") == 3, "three outstanding")
        assert "3 waiting" in str(app.status.content)
        release.set()
        await until(lambda: "waiting" not in chat_text(app), "all answered")
        lines = chat_text(app).splitlines()
        for i, word in enumerate(("one", "two", "three")):
            assert lines[2 * i].endswith(f"\u203a {word}")
            assert f"\u2039 {word}!" in lines[2 * i + 1]


async def test_error_reply_is_shown_with_its_code(stack: Stack) -> None:
    """A handler that raises gives a processor_error entry, styled as an error."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    async with running(ws_url(gw)) as (app, pilot):
        await until(lambda: app.connection.state == "connected", "connected")
        await pilot.press(*"boom", "enter")
        await until(lambda: "processor_error" in chat_text(app), "error shown")
        view = app.query_one(EntryView)
        assert view.has_class("-error")
        request, outcome, message = str(view.content).splitlines()
        assert request.endswith("\u203a boom")
        assert "\u2717" in outcome and "processor_error" in outcome and outcome.endswith(" ms")
        assert "handler exploded" in message


async def test_burst_moves_queue_depth_and_latency_widgets(stack: Stack) -> None:
    """A burst of 40 fills the input queue (seen in the queue panel), then latency shows 40."""
    gw = await stack.gateway(batching="off")
    release = asyncio.Event()

    async def held(payload: str | bytes) -> str | bytes:
        await release.wait()
        return payload

    await stack.processor(held, prefetch=5)
    queue = middle_truncate(stack.topology.input_queue, NAME_WIDTH)  # as the panel shows it
    async with running(ws_url(gw), burst=40) as (app, pilot):
        await until(lambda: queue in text_of(app, ".queue-line"), "queue listed")
        assert "0 in 30 s" in text_of(app, "#latency-numbers")

        def ready_shown() -> int:
            for line in text_of(app, ".queue-line").splitlines():
                if line.startswith(queue):
                    return int(line.split()[1])
            return 0

        assert ready_shown() == 0
        await pilot.press("ctrl+b")
        await until(lambda: ready_shown() >= 30, "ready messages shown")
        assert "40 waiting" in str(app.status.content)
        release.set()
        await until(lambda: "40 in 30 s" in text_of(app, "#latency-numbers"), "latency count")
        await until(lambda: ready_shown() == 0, "queue drained")
        numbers = text_of(app, "#latency-numbers")
        assert "p99" in numbers and "\u2013" not in numbers
        assert "\u2039 40 ok \u00b7 " in chat_text(app)


async def test_gateway_restart_shows_reconnecting_then_recovers(stack: Stack) -> None:
    """Stopping the gateway shows reconnecting; a new gateway on the same port is rejoined."""
    gw = await stack.gateway()
    port = gw.port
    await stack.processor()
    async with running(ws_url(gw)) as (app, pilot):
        await until(lambda: app.connection.state == "connected", "connected")
        first_generation = app.connection.generation
        await gw.stop()
        stack.gateways.remove(gw)
        await until(lambda: app.connection.state == "reconnecting", "reconnecting")
        await until(lambda: "attempt" in str(app.status.content), "attempt shown")
        await until(lambda: "\u2717" in text_of(app, "#freshness"), "stats failure shown")
        await pilot.press(*"kept", "enter")
        assert app.input.value == "kept"  # not connected: the message is kept
        restarted = Gateway(dataclasses.replace(gw.settings, port=port))
        await restarted.start()
        stack.gateways.append(restarted)
        await until(lambda: app.connection.state == "connected", "reconnected", timeout=15)
        assert app.connection.generation == first_generation + 1
        await pilot.press("enter")
        await until(lambda: "kept world" in chat_text(app), "reply after reconnect")
        await until(lambda: "\u2717" not in text_of(app, "#freshness"), "stats back")
        assert text_of(app, "#freshness").startswith("AMQP passive declare")


async def test_unreachable_gateway_fails_with_reason() -> None:
    """With no gateway and no retries left, the status says failed and why."""
    url = f"ws://127.0.0.1:{free_port()}/ws"
    async with running(url, max_retries=1) as (app, pilot):
        await until(lambda: app.connection.state == "failed", "failed", timeout=10)
        status = str(app.status.content)
        assert "failed" in status and "connection refused" in status
        await until(lambda: "\u2717" in text_of(app, "#freshness"), "stats error shown")
        seen: list[str] = []
        post = app.client.post
        app.client.post = lambda m: (seen.append(getattr(m, "state", "")), post(m))
        await pilot.press("ctrl+r")  # retry after giving up
        await until(lambda: seen.count("failed") == 1, "retried and failed again")
        assert "connecting" in seen


async def test_token_is_sent_and_a_wrong_one_fails_with_a_hint(stack: Stack) -> None:
    """With token auth on, the right --token chats; a wrong one ends in 'failed' (HTTP 401)."""
    secret = "tui-test-secret-long-enough-for-hs256"
    gw = await stack.gateway(token_secret=secret)
    await stack.processor()
    good = jwt.encode({"sub": "tui", "exp": int(time.time() + 60)}, secret, "HS256")
    async with running(ws_url(gw), token=good) as (app, pilot):
        await until(lambda: app.connection.state == "connected", "connected with a token")
        await pilot.press(*"hi", "enter")
        await until(lambda: "hi world" in chat_text(app), "reply with a token")
    async with running(ws_url(gw), token=good + "x") as (app, _pilot):
        await until(lambda: app.connection.state == "failed", "refused")
        assert "HTTP 401 (check --token)" in str(app.status.content)


async def test_a_streamed_reply_grows_on_screen_with_time_to_first_chunk(stack: Stack) -> None:
    """The chunks show as they arrive (before the handler produced the last), then the total."""
    from tests.sample_handlers import GatedWords

    gw = await stack.gateway()
    handler = GatedWords()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    async with running(ws_url(gw)) as (app, pilot):
        await until(lambda: app.connection.state == "connected", "connected")
        await pilot.press("a", "enter")
        await until(lambda: "a48," in chat_text(app), "the first chunks shown")
        assert not handler.gate.is_set()
        assert "chunks · first" in chat_text(app) and "a99," not in chat_text(app)
        handler.gate.set()
        await until(lambda: "· total" in chat_text(app), "the whole reply shown")
        assert "a0,a1,a2," in chat_text(app) and "100 chunks · first" in chat_text(app)


async def test_a_gateway_that_stops_answering_shows_no_old_broker_state_or_depths(
    stack: Stack,
) -> None:
    """Issue 14: while /stats fails, no 'broker connected' and no old queue numbers."""
    gw = await stack.gateway()
    await stack.processor()
    queue = middle_truncate(stack.topology.input_queue, NAME_WIDTH)
    async with running(ws_url(gw)) as (app, _pilot):
        await until(lambda: "broker connected" in text_of(app, "#gateway"), "broker shown")
        await until(lambda: queue in text_of(app, ".queue-line"), "queue shown")

        def numbers() -> str:
            return "".join(line[NAME_WIDTH:] for line in text_of(app, ".queue-line").splitlines())

        assert any(ch.isdigit() for ch in numbers())
        await gw.stop()
        stack.gateways.remove(gw)
        await until(lambda: "\u2717" in text_of(app, "#freshness"), "stats failure shown")
        assert "broker connected" not in text_of(app, "#gateway")
        assert "broker unknown" in text_of(app, "#gateway")
        assert not any(ch.isdigit() for ch in numbers()), numbers()


async def bursts(url: str, size: int, every: float, stop: asyncio.Event) -> None:
    """``size`` requests at once every ``every`` seconds (on a fixed schedule) until ``stop``."""
    loop = asyncio.get_running_loop()
    async with connect(url) as ws:
        start = loop.time()
        sent = 0
        while not stop.is_set():
            for _ in range(size):
                await ws.send("hello")
            for _ in range(size):
                assert await ws.recv() == "hello world"
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), start + sent * every - loop.time())


def reply_rate_shown(app: HoplineApp) -> float:
    """The queue panel's ``replies N/s`` figure."""
    match = re.search(r"replies ([0-9.]+)/s", text_of(app, "#reply-line"))
    assert match, text_of(app, "#reply-line")
    return float(match.group(1))


async def test_gateway_replies_per_second_is_steady_under_bursty_load(stack: Stack) -> None:
    """Bursts of 20 requests every 0.5 s read as a steady ~40/s on every /stats answer (the
    last 5 s), not 100/s after a burst and 0/s between two (the last poll's 0.2 s)."""
    gw = await stack.gateway()
    await stack.processor()
    stop = asyncio.Event()
    async with running(ws_url(gw)) as (app, _pilot):
        await until(lambda: app.stats.latest is not None, "a /stats answer")
        assert app.stats.latest is not None
        started = app.stats.latest.time
        load = asyncio.create_task(bursts(ws_url(gw), 20, 0.5, stop))
        try:
            await until(
                lambda: app.stats.latest is not None and app.stats.latest.time >= started + 6,
                "six seconds of load seen by /stats",
                timeout=30,
            )
            shown = []
            for _ in range(10):  # two seconds of answers
                latest = app.stats.latest
                await until(
                    lambda seen=latest: app.stats.latest is not seen,
                    "a new /stats answer",
                )
                shown.append(reply_rate_shown(app))
        finally:
            stop.set()
            await load
    assert all(30 <= rate <= 50 for rate in shown), shown
