"""WebSockets from a real Chromium: what the README promises a page gets from /ws."""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import Browser, Page

from gateway.security import mint_token
from gateway.server import Gateway
from tests.browser.conftest import Pages, gateway_base
from tests.conftest import Stack, ws_url
from tests.helpers import eventually, requests_total
from tests.sample_handlers import Counting

SECRET = "browser-test-secret-long-enough-for-hs256"

# Open a socket from the page; resolves with {opened, protocol, code, reason, replies}
# once `count` replies arrived (then the page closes it) or the socket closed.
EXCHANGE = """
async ({url, protocols, frames, count, binary}) => {
  const ws = new WebSocket(url, protocols);
  if (binary) ws.binaryType = "arraybuffer";
  const result = {opened: false, protocol: null, code: null, reason: null, replies: []};
  return await new Promise((resolve) => {
    ws.onopen = () => {
      result.opened = true;
      result.protocol = ws.protocol;
      for (const frame of frames) ws.send(binary ? new Uint8Array(frame) : frame);
      if (count === 0) resolve(result);
    };
    ws.onmessage = (event) => {
      result.replies.push(binary ? Array.from(new Uint8Array(event.data)) : event.data);
      if (result.replies.length === count) { ws.close(1000); resolve(result); }
    };
    ws.onclose = (event) => {
      result.code = event.code;
      result.reason = event.reason;
      resolve(result);
    };
  });
}
"""


async def exchange(
    page: Page,
    gw: Gateway,
    frames: list,
    count: int | None = None,
    protocols: list[str] | None = None,
    binary: bool = False,
) -> dict:
    """Send ``frames`` from ``page`` and collect ``count`` replies (default: one per frame)."""
    return await page.evaluate(
        EXCHANGE,
        {
            "url": ws_url(gw),
            "protocols": protocols or [],
            "frames": frames,
            "count": len(frames) if count is None else count,
            "binary": binary,
        },
    )


async def test_plain_and_v1_round_trips(stack: Stack, chromium: Browser, pages: Pages) -> None:
    """Plain mode echoes text replies; hopline.v1 answers JSON envelopes with the id."""
    gw = await stack.gateway()
    await stack.processor()
    page = await pages.open(chromium, pages.app)
    plain = await exchange(page, gw, ["hello"])
    assert (plain["protocol"], plain["replies"]) == ("", ["hello world"])
    v1 = await exchange(page, gw, ['{"id": 7, "data": "hi"}'], protocols=["hopline.v1"])
    assert v1["protocol"] == "hopline.v1"
    assert v1["replies"] == ['{"id":7,"data":"hi world"}']


async def test_100_pipelined_messages_come_back_in_order(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """100 messages sent without waiting get 100 replies in request order (plain mode)."""
    gw = await stack.gateway()
    await stack.processor()
    page = await pages.open(chromium, pages.app)
    result = await exchange(page, gw, [f"m{i}" for i in range(100)])
    assert result["replies"] == [f"m{i} world" for i in range(100)]


async def test_binary_frames_get_binary_replies(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """A binary frame (all byte values) gets a binary reply with the handler's bytes."""
    gw = await stack.gateway()
    await stack.processor()
    page = await pages.open(chromium, pages.app)
    data = list(range(256))
    result = await exchange(page, gw, [data], binary=True)
    assert result["replies"] == [data + list(b" world")]


async def test_origin_allowed_and_refused(stack: Stack, chromium: Browser, pages: Pages) -> None:
    """With an allow-list the app's page is served; a cross-site page's socket never opens."""
    gw = await stack.gateway(allowed_origins=frozenset({pages.app}))
    handler = Counting()
    await stack.processor(handler)
    app = await exchange(await pages.open(chromium, pages.app), gw, ["hello"])
    assert app["replies"] == ["hello world"]
    evil = await exchange(await pages.open(chromium, pages.evil), gw, ["stolen"], count=0)
    assert (evil["opened"], evil["code"]) == (False, 1006)
    assert await requests_total(gateway_base(gw)) == handler.runs == 1


async def test_token_subprotocol_is_accepted_and_never_echoed(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """The token rides in a subprotocol entry; the gateway selects hopline.v1, not the token."""
    gw = await stack.gateway(token_secret=SECRET)
    handler = Counting()
    await stack.processor(handler)
    page = await pages.open(chromium, pages.app)
    token = mint_token(SECRET, 60, time.time())
    ok = await exchange(
        page, gw, ['{"id": "a", "data": "hi"}'], protocols=["hopline.v1", f"hopline.token.{token}"]
    )
    assert ok["protocol"] == "hopline.v1"
    assert ok["replies"] == ['{"id":"a","data":"hi world"}']
    for protocols in (["hopline.v1"], ["hopline.v1", "hopline.token.forged.token.value"]):
        refused = await exchange(page, gw, ["x"], count=0, protocols=protocols)
        assert (refused["opened"], refused["code"]) == (False, 1006)
    assert await requests_total(gateway_base(gw)) == handler.runs == 1


async def test_oversized_message_closes_with_1009(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """A frame over --max-message-size closes the socket with 1009; nothing is published."""
    gw = await stack.gateway(max_message_size=1024)
    handler = Counting()
    await stack.processor(handler)
    page = await pages.open(chromium, pages.app)
    result = await exchange(page, gw, ["x" * 2048], count=1)
    assert result["code"] == 1009
    assert result["reason"]  # websockets says what the limit is
    assert await requests_total(gateway_base(gw)) == handler.runs == 0


async def test_drain_closes_with_1001_and_its_reason(
    stack: Stack, chromium: Browser, pages: Pages
) -> None:
    """Stopping the gateway closes a page's socket with 1001 'gateway shutting down'."""
    gw = await stack.gateway(drain_timeout=2)
    await stack.processor()
    page = await pages.open(chromium, pages.app)
    closed = asyncio.ensure_future(exchange(page, gw, ["hello"], count=2))  # waits for the close

    async def published() -> bool:
        return await requests_total(gateway_base(gw)) >= 1

    # Not only open: a socket can be open before its request arrives, and a drain that
    # starts in between has nothing to answer.
    await eventually(published, message="the page's request reached the gateway")
    await gw.stop()
    result = await closed
    assert result["replies"] == ["hello world"]
    assert (result["code"], result["reason"]) == (1001, "gateway shutting down")
