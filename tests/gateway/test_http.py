"""/stream, /health, /metrics, /stats and unknown paths, against a real broker."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from gateway.server import Gateway
from hopline.wire.envelope import decode_plain_reply
from hopline.wire.errors import ErrorCode, Failure
from tests.conftest import Stack, http_url, ws_url
from tests.helpers import eventually, http_get, parse_sse


async def test_stream_returns_the_reply_as_an_sse_event(stack: Stack) -> None:
    """curl -N /stream/hello gives 'data: hello world', then an 'end' event; all have ids."""
    gw = await stack.gateway()
    await stack.processor()
    response = await http_get(http_url(gw, "/stream/hello"))
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in response.headers
    retry, events = parse_sse(response.body)
    assert [(e.event, e.data) for e in events] == [("message", "hello world"), ("end", "")]
    ids = [e.id for e in events]
    assert all(ids) and len(set(ids)) == 2
    assert retry == 2000


async def test_stream_url_decodes_the_message(stack: Stack) -> None:
    """Percent-encoded characters reach the processor decoded; line breaks become data lines."""
    gw = await stack.gateway()
    await stack.processor("echo")
    response = await http_get(http_url(gw, "/stream/caf%C3%A9%20au%20lait"))
    assert parse_sse(response.body)[1][0].data == "café au lait"
    response = await http_get(http_url(gw, "/stream/one%0Atwo%0D%0Athree"))
    assert b"data: one\ndata: two\ndata: three\n" in response.body
    assert parse_sse(response.body)[1][0].data == "one\ntwo\nthree"


async def test_stream_timeout_maps_to_504(stack: Stack) -> None:
    """No processor: the stream answers 504 with the timeout error body."""
    gw = await stack.gateway(request_timeout=0.3)
    response = await http_get(http_url(gw, "/stream/hello"))
    assert response.status == 504
    assert response.json()["error"]["code"] == "timeout"


async def test_stream_too_large_maps_to_413(stack: Stack) -> None:
    """A message over the size limit is refused with 413 before any publish."""
    gw = await stack.gateway(max_message_size=16)
    response = await http_get(http_url(gw, "/stream/" + "x" * 17))
    assert response.status == 413
    assert response.json()["error"]["code"] == "too_large"
    assert gw.metrics.total("hopline_requests_total") == 0


async def test_health_reports_the_original_fields(stack: Stack) -> None:
    """/health keeps status, active_websockets and pending_requests, and counts sockets."""
    gw = await stack.gateway()
    await stack.processor()
    async with connect(ws_url(gw)):
        response = await http_get(http_url(gw, "/health"))
    body = response.json()
    assert response.status == 200
    assert body["status"] == "healthy"
    assert body["active_websockets"] == 1
    assert body["pending_requests"] == 0
    assert body["broker"] == "connected"


async def test_health_turns_503_past_the_no_consumer_grace_and_200_once_a_processor_consumes(
    stack: Stack,
) -> None:
    """--no-consumer-grace 1: with no processor, /health turns 503 (never before the grace)
    and requests get 'unavailable' at once; a processor attaches: 200 and replies; it leaves:
    503 again after the grace."""
    grace = 1.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    gw = await stack.gateway(no_consumer_grace=grace)
    await eventually(lambda: _health_status(gw, 503), timeout=grace + 5, message="503")
    unhealthy_after = loop.time() - started
    body = (await http_get(http_url(gw, "/health"))).json()
    assert (body["status"], body["broker"]) == ("unhealthy", "connected")
    assert body["input_queue"] == f"no processor has consumed the input queues for over {grace:g} s"
    assert unhealthy_after >= grace, "503 before the grace ran out"
    queue = stack.topology.input_queue
    assert await _plain_request(gw, "hi") == Failure(
        ErrorCode.UNAVAILABLE, f"no processor consumes {queue}"
    )

    processor = await stack.processor("world")
    await eventually(lambda: _health_status(gw, 200), timeout=5, message="200 with a consumer")
    assert (await http_get(http_url(gw, "/health"))).json()["input_queue"] == "ok"
    assert await _plain_request(gw, "hi") == "hi world"

    await processor.stop()
    stack.processors.remove(processor)
    left = loop.time()
    await eventually(lambda: _health_status(gw, 503), timeout=grace + 5, message="503 again")
    assert loop.time() - left >= grace, "503 before the grace ran out"


async def _health_status(gw: Gateway, status: int) -> bool:
    return (await http_get(http_url(gw, "/health"))).status == status


async def _plain_request(gw: Gateway, message: str) -> str | bytes | bytearray | Failure:
    async with connect(ws_url(gw)) as ws:
        await ws.send(message)
        return decode_plain_reply(await asyncio.wait_for(ws.recv(), 10))


async def test_metrics_count_requests_replies_and_errors(stack: Stack) -> None:
    """/metrics is Prometheus text with the request, reply, error and latency series."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    async with connect(ws_url(gw)) as ws:
        for message in ("a", "boom"):
            await ws.send(message)
        for _ in range(2):
            await ws.recv()
    response = await http_get(http_url(gw, "/metrics"))
    text = response.body.decode()
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "hopline_requests_total 2.0" in text
    assert "hopline_replies_total 1.0" in text
    assert 'hopline_errors_total{code="processor_error"} 1.0' in text
    assert "hopline_round_trip_seconds_count 2.0" in text
    assert "hopline_active_websockets" in text
    assert "hopline_pending_requests 0.0" in text


async def test_stats_reports_queue_depths_and_counters(stack: Stack) -> None:
    """/stats names the input queues with their consumers and the counters."""
    gw = await stack.gateway()
    await stack.processor()
    await stack.batching_ready(gw)
    response = await http_get(http_url(gw, "/stats"))
    body = response.json()
    queues = {q["name"]: q for q in body["queues"]["items"]}
    assert body["queues"]["source"] == "amqp"
    assert queues[stack.topology.input_queue]["consumers"] == 1
    assert queues[stack.topology.batch_queue]["consumers"] == 1
    assert body["batching"] is True
    assert set(body["errors_total"]) >= {"timeout", "busy", "processor_error"}


async def test_unknown_path_is_404(stack: Stack) -> None:
    """Anything else is a 404 that lists the routes."""
    gw = await stack.gateway()
    response = await http_get(http_url(gw, "/nope"))
    assert response.status == 404
    assert "/ws" in json.loads(response.body)["routes"]
