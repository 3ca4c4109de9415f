"""The HTTP rules browsers rely on, checked on the wire against a real gateway and broker.

Methods, preflight, HEAD, EventSource reconnects, SSE errors, the origin policy with
``Sec-Fetch-Site``, CORS headers, /client.js, URL stream tokens and close reasons.
Every "runs nothing" claim is checked twice: ``hopline_requests_total`` on /metrics
and the handler's own run count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import jwt
import pytest
from click.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.server import Gateway
from gateway.stream_token import mint_stream_token
from hopline.cli import main
from tests.conftest import Stack, http_url, ws_url
from tests.helpers import (
    SseEvent,
    eventually,
    http_get,
    http_request,
    parse_sse,
    requests_total,
)
from tests.sample_handlers import Counting, Gate, GatedWords, broken_stream

APP = "http://app.example:8080"
EVIL = "https://evil.example"
SECRET = "browser-test-secret-long-enough-for-hs256"


async def assert_nothing_ran(gw: Gateway, handler: Counting) -> None:
    """Neither the gateway (metrics) nor the processor (handler) saw a request."""
    assert await requests_total(http_url(gw, "")) == 0
    assert handler.runs == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
async def test_other_methods_get_405_with_allow_and_run_nothing(stack: Stack, method: str) -> None:
    """Only GET (and HEAD) run anything; the rest get 405 and the Allow list."""
    gw = await stack.gateway()
    handler = Counting()
    await stack.processor(handler)
    response = await http_request(http_url(gw, "/stream/x"), method)
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    ws = await http_request(http_url(gw, "/ws"), method)
    assert (ws.status, ws.headers["allow"]) == (405, "GET, OPTIONS")
    await assert_nothing_ran(gw, handler)


async def test_head_answers_the_head_without_running(stack: Stack) -> None:
    """HEAD /stream/x is the head of an event stream, no body, no request, no rate-limit
    token spent; HEAD /health is GET's head."""
    gw = await stack.gateway(rate_limit=1, rate_burst=1)
    handler = Counting()
    await stack.processor(handler)
    for _ in range(3):
        response = await http_request(http_url(gw, "/stream/x"), "HEAD")
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.body == b""
    health = await http_request(http_url(gw, "/health"), "HEAD")
    full = await http_get(http_url(gw, "/health"))
    assert (health.status, health.body) == (200, b"")
    assert health.headers["content-length"] == full.headers["content-length"]
    await assert_nothing_ran(gw, handler)
    assert (await http_get(http_url(gw, "/stream/x"))).status == 200  # the one token is left


async def test_preflight_is_answered_without_running(stack: Stack) -> None:
    """OPTIONS grants an allowed origin GET/HEAD with Authorization; others get no grant."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    handler = Counting()
    await stack.processor(handler)
    preflight = [("Access-Control-Request-Method", "GET")]
    preflight.append(("Access-Control-Request-Headers", "authorization"))
    allowed = await http_request(
        http_url(gw, "/stream/x"), "OPTIONS", [("Origin", APP), *preflight]
    )
    assert allowed.status == 204
    assert allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["access-control-allow-methods"] == "GET, HEAD"
    assert "Authorization" in allowed.headers["access-control-allow-headers"]
    assert allowed.headers["vary"] == "Origin"
    refused = await http_request(
        http_url(gw, "/stream/x"), "OPTIONS", [("Origin", EVIL), *preflight]
    )
    assert refused.status == 204
    assert "access-control-allow-origin" not in refused.headers
    await assert_nothing_ran(gw, handler)


async def test_reconnect_with_last_event_id_gets_204_and_runs_nothing(stack: Stack) -> None:
    """An EventSource reconnect (Last-Event-ID) never runs the request again."""
    gw = await stack.gateway()
    handler = Counting()
    await stack.processor(handler)
    first = await http_request(
        http_url(gw, "/stream/hello"), headers=[("Accept", "text/event-stream")]
    )
    last_id = parse_sse(first.body)[1][-1].id
    assert last_id
    again = await http_request(
        http_url(gw, "/stream/hello"),
        headers=[("Accept", "text/event-stream"), ("Last-Event-ID", last_id)],
    )
    assert (again.status, again.body) == (204, b"")
    assert "content-length" not in again.headers
    assert await requests_total(http_url(gw, "")) == 1
    assert handler.runs == 1


async def test_event_stream_clients_get_errors_as_events(stack: Stack) -> None:
    """Accept: text/event-stream: 200 at once, then 'error' with the JSON error, then 'end'."""
    gw = await stack.gateway(request_timeout=0.3, max_message_size=16)
    sse = [("Accept", "text/event-stream")]
    response = await http_request(http_url(gw, "/stream/hello"), headers=sse)
    assert response.status == 200
    retry, events = parse_sse(response.body)
    assert [e.event for e in events] == ["error", "end"]
    assert json.loads(events[0].data)["error"]["code"] == "timeout"
    assert retry == 2000
    too_large = await http_request(http_url(gw, "/stream/" + "x" * 17), headers=sse)
    events = parse_sse(too_large.body)[1]
    assert (too_large.status, [e.event for e in events]) == (200, ["error", "end"])
    assert json.loads(events[0].data)["error"]["code"] == "too_large"
    plain = await http_get(http_url(gw, "/stream/hello"))  # others keep the status mapping
    assert (plain.status, plain.json()["error"]["code"]) == (504, "timeout")


async def test_event_stream_head_is_sent_before_the_reply(stack: Stack) -> None:
    """An EventSource has its id before the request runs: even a crash mid-wait cannot rerun it."""
    gw = await stack.gateway()
    gate = Gate()
    await stack.processor(gate)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /stream/wait HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\n\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\n\r\nretry: 2000\nid: " in head
    await eventually(lambda: gate.seen == 1, message="request reached the handler")
    writer.close()  # the client goes away: the request is cancelled, its slot freed
    await eventually(lambda: gw.broker.pending_requests == 0, message="request cancelled")
    await eventually(lambda: gw.connections == 0, message="slot released")
    gate.released.set()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Origin", EVIL)], 403),
        ([("Origin", APP), ("Origin", EVIL)], 403),
        ([("Sec-Fetch-Site", "cross-site")], 403),  # no-cors fetch, <img> of another site
        ([("Sec-Fetch-Site", "same-site")], 403),
        ([("Origin", APP), ("Sec-Fetch-Site", "cross-site")], 200),  # CORS from the app
        ([("Sec-Fetch-Site", "same-origin")], 200),
        ([("Sec-Fetch-Site", "none")], 200),  # typed in the address bar
        ([], 200),  # curl
    ],
)
async def test_origin_policy_guards_stream(
    stack: Stack, headers: list[tuple[str, str]], status: int
) -> None:
    """With an allow-list, a foreign or cross-site request is refused before any publish."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    handler = Counting()
    await stack.processor(handler)
    response = await http_request(http_url(gw, "/stream/hello"), headers=headers)
    assert response.status == status
    assert handler.runs == await requests_total(http_url(gw, "")) == (1 if status == 200 else 0)


async def test_without_an_allow_list_cross_site_requests_run(stack: Stack) -> None:
    """No --allowed-origin: the gateway is open to every page (documented), as before."""
    gw = await stack.gateway()
    await stack.processor()
    response = await http_request(
        http_url(gw, "/stream/hello"), headers=[("Sec-Fetch-Site", "cross-site")]
    )
    assert response.status == 200


@pytest.mark.parametrize("path", ["/health", "/stats", "/stream/hello"])
async def test_cors_headers_for_allowed_origins_only(stack: Stack, path: str) -> None:
    """A page on an allowed origin may read /health, /stats and /stream; others get no grant."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    await stack.processor()
    allowed = await http_request(http_url(gw, path), headers=[("Origin", APP)])
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["vary"] == "Origin"
    other = await http_request(http_url(gw, path), headers=[("Origin", EVIL)])
    assert "access-control-allow-origin" not in other.headers
    assert other.headers["vary"] == "Origin"
    metrics = await http_request(http_url(gw, "/metrics"), headers=[("Origin", APP)])
    assert "access-control-allow-origin" not in metrics.headers


async def test_refusals_are_readable_by_allowed_pages(stack: Stack) -> None:
    """A 401 on /stream carries CORS headers, so fetch() from the app reads its status."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}), token_secret=SECRET)
    response = await http_request(http_url(gw, "/stream/x"), "HEAD", [("Origin", APP)])
    assert response.status == 401
    assert response.headers["access-control-allow-origin"] == APP
    assert "WWW-Authenticate" in response.headers["access-control-expose-headers"]


async def test_client_js_is_served_with_an_etag(stack: Stack) -> None:
    """/client.js is the ES module, readable from any origin, revalidated by ETag."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    response = await http_request(http_url(gw, "/client.js"), headers=[("Origin", EVIL)])
    assert response.status == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    assert b"export function connect(" in response.body
    cached = await http_request(
        http_url(gw, "/client.js"), headers=[("If-None-Match", response.headers["etag"])]
    )
    assert (cached.status, cached.body) == (304, b"")


async def test_stream_token_in_the_url(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """?token= takes only short-lived stream tokens; they never reach the logs; not on /ws."""
    caplog.set_level(logging.DEBUG, logger="websockets.server")
    gw = await stack.gateway(token_secret=SECRET)
    await stack.processor()
    good = mint_stream_token(SECRET, 60, time.time())
    response = await http_get(http_url(gw, f"/stream/hello?token={good}"))
    assert (response.status, parse_sse(response.body)[1][0].data) == (200, "hello world")
    general = jwt.encode({"exp": int(time.time()) + 60}, SECRET, "HS256")
    long_lived = jwt.encode({"exp": int(time.time()) + 3600, "purpose": "stream"}, SECRET, "HS256")
    for token in (general, long_lived, good[:-2] + "xx"):
        assert (await http_get(http_url(gw, f"/stream/hello?token={token}"))).status == 401
    bearer = await http_request(
        http_url(gw, "/stream/hello"), headers=[("Authorization", f"Bearer {general}")]
    )
    assert bearer.status == 200  # headers may carry any valid token
    offered: list = ["hopline.v1", f"hopline.token.{good}"]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gw), subprotocols=offered):
            pass
    assert refused.value.response.status_code == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/stream/hello?token=***" in logged
    assert good not in logged and long_lived not in logged


def test_hopline_token_purpose_stream() -> None:
    """hopline token --purpose stream mints a 60 s stream token; --ttl over 300 is refused."""
    runner = CliRunner()
    result = runner.invoke(main, ["token", "--token-secret", SECRET, "--purpose", "stream"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), SECRET, algorithms=["HS256"])
    assert claims["purpose"] == "stream"
    assert 55 <= claims["exp"] - time.time() <= 61
    too_long = runner.invoke(
        main, ["token", "--token-secret", SECRET, "--purpose", "stream", "--ttl", "3600"]
    )
    assert too_long.exit_code == 2
    assert "at most 300 s" in too_long.output


async def test_drain_closes_sockets_with_1001_and_a_reason(stack: Stack) -> None:
    """A stopping gateway says why it closes: 1001 'gateway shutting down'."""
    gw = await stack.gateway(drain_timeout=2)
    await stack.processor()
    async with connect(ws_url(gw)) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi world"
        await gw.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "gateway shutting down")


async def read_events(reader: asyncio.StreamReader, count: int) -> list[SseEvent]:
    """Read from an open /stream response until ``count`` events were dispatched."""
    body = b""
    async with asyncio.timeout(10):
        while len(events := parse_sse(body)[1]) < count:
            body += await reader.read(4096)
    return events


async def test_stream_sends_each_chunk_as_it_arrives(stack: Stack) -> None:
    """A streamed reply: one event per chunk while the handler still runs, then 'end'."""
    handler = GatedWords()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /stream/w HTTP/1.1\r\nHost: x\r\n\r\n")  # not even an SSE client
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")  # started by the first chunk
    early = await read_events(reader, 49)
    assert not handler.gate.is_set(), "chunks only arrived after the handler finished"
    handler.gate.set()
    rest = parse_sse(await reader.read())[1]  # the server ends the response
    writer.close()
    events = early + rest
    assert [e.data for e in events if e.event == "message"] == [f"w{i}," for i in range(100)]
    assert events[-1].event == "end"
    assert len({e.id for e in events}) == 101


async def test_a_stream_that_fails_midway_ends_with_an_error_event(stack: Stack) -> None:
    """Once chunks went out as 200, a failure is an 'error' event, never a silent success."""
    gw = await stack.gateway()
    await stack.processor(broken_stream)
    await stack.batching_ready(gw)
    response = await http_get(http_url(gw, "/stream/x"))
    assert response.status == 200
    events = parse_sse(response.body)[1]
    assert [e.event for e in events] == ["message", "message", "error", "end"]
    assert [e.data for e in events[:2]] == ["one", "two"]
    assert json.loads(events[2].data)["error"]["code"] == "processor_error"
