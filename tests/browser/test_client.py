"""The browser client (/client.js) and the runnable example page, in a real Chromium."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest
from playwright.async_api import Browser, Page
from websockets.asyncio.client import connect

from gateway.security import mint_token
from gateway.server import Gateway
from gateway.stream_token import mint_stream_token
from tests.browser.conftest import Pages, gateway_base
from tests.conftest import Stack
from tests.helpers import eventually, requests_total
from tests.sample_handlers import Counting, Gate, GatedWords, broken_stream

SECRET = "browser-test-secret-long-enough-for-hs256"


async def load_client(page: Page, gw: Gateway) -> None:
    """Import the gateway's /client.js into the page as ``window.hopline``."""
    await page.evaluate(
        "async (base) => { window.hopline = await import(base + '/client.js'); }", gateway_base(gw)
    )


async def test_request_matches_replies_by_id(stack: Stack, chromium: Browser, pages: Pages) -> None:
    """Replies that come back out of order resolve the right promises."""
    gw = await stack.gateway()
    gate = Gate()
    await stack.processor(gate)  # "wait" is answered only after "release"
    page = await pages.open(chromium, pages.app)
    await load_client(page, gw)
    await page.evaluate(
        """() => {
          window.client = hopline.connect();  // the gateway that served client.js
          window.order = [];
          window.slow = client.request("wait").then((reply) => order.push(reply));
        }"""
    )
    await eventually(lambda: gate.seen == 1, message="'wait' reached the handler")
    order = await page.evaluate(
        """async () => {
          await client.request("release").then((reply) => order.push(reply));
          await slow;
          client.close();
          return order;
        }"""
    )
    assert order == ["release done", "wait done"]


async def test_token_and_reconnect_with_backoff(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """The token goes in the subprotocol on every (re)connection; a restarted gateway is
    reconnected to after backoff, and the page saw why the socket closed."""
    gw = await stack.gateway(token_secret=SECRET)
    handler = Counting()
    await stack.processor(handler)
    page = await pages.open(chromium, pages.app)
    await load_client(page, gw)
    await page.evaluate(
        """(token) => {
          window.statuses = [];
          window.tokenCalls = 0;
          window.client = hopline.connect(undefined, {
            token: async () => (window.tokenCalls += 1, token),
            minDelay: 50, maxDelay: 400,
            onstatus: (s) => statuses.push(s),
          });
        }""",
        mint_token(SECRET, 60, time.time()),
    )
    assert await page.evaluate("client.request('one')") == "one world"
    port = gw.port
    await gw.stop()
    await page.wait_for_function("statuses.some((s) => s.state === 'closed')")
    restarted = Gateway(dataclasses.replace(gw.settings, port=port))
    await restarted.start()
    stack.gateways.append(restarted)
    assert await page.evaluate("client.request('two')") == "two world"
    statuses = await page.evaluate("statuses")
    assert statuses[0] == {"state": "open"}
    closed = statuses[1]
    assert (closed["code"], closed["reason"], closed["diagnosis"]) == (
        1001,
        "gateway shutting down",
        None,
    )
    assert closed["retryIn"] > 0
    assert statuses[-1] == {"state": "open"}
    failed = [s["diagnosis"] for s in statuses[2:-1]]
    # attempts while nothing listened; the last one's diagnosis may find the gateway back
    assert set(failed[:-1]) <= {"unreachable"}
    assert failed[-1:] in ([], ["unreachable"], ["transient"])
    assert await page.evaluate("tokenCalls") == len(failed) + 2
    assert handler.runs == 2


@pytest.mark.parametrize("case", ["forbidden", "unauthorized", "busy", "unreachable"])
async def test_a_failed_handshake_is_diagnosed(
    stack: Stack, chromium: Browser, pages: Pages, case: str
) -> None:
    """A page learns why it cannot connect: its origin, its token, the connection limit, or
    no gateway at all (a refused handshake is a bare 1006 to JavaScript)."""
    gw = await stack.gateway(
        token_secret=SECRET, allowed_origins=frozenset({pages.app}), max_connections=1
    )
    page = await pages.open(chromium, pages.evil if case == "forbidden" else pages.app)
    await load_client(page, gw)  # client.js is readable from any origin
    url = f"ws://127.0.0.1:{gw.port}/ws"
    token = mint_token(SECRET, 60, time.time()) if case == "busy" else None
    async with contextlib.AsyncExitStack() as held:
        if case == "busy":  # another client holds the only connection slot
            await held.enter_async_context(
                connect(url, additional_headers={"Authorization": f"Bearer {token}"})
            )
        if case == "unreachable":
            await gw.stop()
        status = await page.evaluate(
            """([url, token]) => new Promise((resolve) => {
              hopline.connect(url, {token, reconnect: false, onstatus: resolve});
            })""",
            [url, token],
        )
    assert (status["state"], status["code"], status["diagnosis"]) == ("closed", 1006, case)
    if case != "unreachable":
        assert await requests_total(gateway_base(gw)) == 0


async def test_streamed_replies_arrive_chunk_by_chunk(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """A streaming handler's chunks reach request()'s onChunk and stream(), in order, the
    first ones while the handler still waits; a failure mid-stream rejects with its code."""
    handler = GatedWords()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    page = await pages.open(chromium, pages.app)
    await load_client(page, gw)
    await page.evaluate(
        """() => {
          window.client = hopline.connect();
          window.chunks = [];
          window.reply = client.request("r", {onChunk: (c) => chunks.push(c)});
        }"""
    )
    await page.wait_for_function("chunks.length === 49")
    assert not handler.gate.is_set()
    handler.gate.set()
    result = await page.evaluate(
        """async () => {
          const reply = await window.reply;
          const iterated = [];
          for await (const chunk of client.stream("s")) iterated.push(chunk);
          return {reply, chunks, iterated};
        }"""
    )
    expected = [f"{{}}{i}," for i in range(100)]
    assert result["chunks"] == [c.format("r") for c in expected]
    assert result["reply"] == "".join(c.format("r") for c in expected)
    assert result["iterated"] == [c.format("s") for c in expected]


async def test_a_stream_that_fails_midway_rejects_with_its_code(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """Chunks that went out are seen; the request then rejects with processor_error."""
    gw = await stack.gateway()
    await stack.processor(broken_stream)
    await stack.batching_ready(gw)
    page = await pages.open(chromium, pages.app)
    await load_client(page, gw)
    result = await page.evaluate(
        """async () => {
          const client = hopline.connect();
          const chunks = [];
          try { await client.request("x", {onChunk: (c) => chunks.push(c)}); }
          catch (e) { return {chunks, failure: [e.name, e.code]}; }
        }"""
    )
    assert result == {"chunks": ["one", "two"], "failure": ["HoplineError", "processor_error"]}


async def test_stream_request_over_eventsource(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """streamRequest(): the reply, the error code, and a refusal's reason, each run once."""
    gw = await stack.gateway(token_secret=SECRET, request_timeout=1.0)
    handler = Counting()
    await stack.processor(handler)
    page = await pages.open(chromium, pages.app)
    await load_client(page, gw)
    outcome = """async ([message, token]) => {
      try { return await hopline.streamRequest(message, {token}); }
      catch (e) { return [e.code, e.message]; }
    }"""
    token = mint_stream_token(SECRET, 60, time.time())
    assert await page.evaluate(outcome, ["hello", token]) == "hello world"
    assert await page.evaluate(outcome, ["hello", None]) == [
        "unauthorized",
        "the gateway refused the stream (401)",
    ]
    assert await requests_total(gateway_base(gw)) == handler.runs == 1


async def test_the_example_page_works(stack: Stack, chromium: Browser, pages: Pages) -> None:
    """docs/browser-example.html, served from an allowed origin, asks over both transports."""
    gw = await stack.gateway(allowed_origins=frozenset({pages.app}))
    handler = Counting()
    await stack.processor(handler)
    page = await pages.open(chromium, pages.app, f"/example.html?gateway={gateway_base(gw)}")
    await page.wait_for_function("document.querySelector('#status').textContent === 'connected'")
    await page.fill("#message", "from the page")
    await page.click("button[value=ws]")
    await page.wait_for_function("document.querySelector('#log').textContent.includes('ws reply')")
    await page.click("button[value=sse]")
    await page.wait_for_function("document.querySelector('#log').textContent.includes('sse reply')")
    log = await page.text_content("#log")
    assert log is not None
    assert "gateway: healthy" in log
    assert "ws reply: from the page world" in log
    assert "sse reply: from the page world" in log
    assert await requests_total(gateway_base(gw)) == handler.runs == 2
