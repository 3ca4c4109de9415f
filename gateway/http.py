"""Plain HTTP endpoints served before the WebSocket upgrade: /health, /metrics, /stats, /stream.

Each function takes the gateway state it reads and returns a websockets
:class:`~websockets.http11.Response`; none of them raises for a client's input.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.http11 import Response

from gateway.requests import Failure, Request, Result
from hopline.wire.envelope import encode_plain_error
from hopline.wire.errors import HTTP_STATUS_BY_CODE, ErrorCode

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["health", "metrics", "not_found", "stats", "stream"]

JSON_TYPE = "application/json"


def respond(status: int, body: bytes | str, content_type: str, **headers: str) -> Response:
    """A complete HTTP response; the connection closes after it."""
    data = body.encode() if isinstance(body, str) else body
    hdrs = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    for name, value in headers.items():
        hdrs[name.replace("_", "-")] = value
    return Response(status, HTTPStatus(status).phrase, hdrs, data)


def respond_json(status: int, obj: Any) -> Response:
    """A JSON response."""
    return respond(status, json.dumps(obj) + "\n", JSON_TYPE)


def not_found(path: str) -> Response:
    """404 for an unknown path, listing the known ones."""
    return respond_json(
        404,
        {
            "error": f"no route for {path}",
            "routes": ["/ws", "/stream/<message>", "/health", "/metrics", "/stats"],
        },
    )


def health(gw: Gateway) -> Response:
    """``GET /health``: 200 ``healthy`` while the broker is connected and not draining, else 503.

    Everything in it is this process' own; ``worker`` says which of the gateway
    processes sharing the port (``--workers``) answered: ``index`` (0-based),
    ``count``, ``pid`` and its ``reply_queue``.
    """
    connected = gw.broker.connected
    healthy = connected and not gw.draining
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "active_websockets": gw.active_websockets,
        "pending_requests": gw.broker.pending_requests,
        "broker": "connected" if connected else "disconnected",
        "draining": gw.draining,
        "batching": gw.broker.batching_active,
        "worker": _worker(gw),
    }
    return respond_json(200 if healthy else 503, body)


def _worker(gw: Gateway) -> dict[str, Any]:
    return {
        "index": gw.worker.index,
        "count": gw.worker.count,
        "pid": os.getpid(),
        "reply_queue": gw.broker.reply_queue_name,
    }


def metrics(gw: Gateway) -> Response:
    """``GET /metrics``: Prometheus text format."""
    return respond(200, gw.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")


def stats(gw: Gateway) -> Response:
    """``GET /stats``: live counters and queue depths for dashboards such as ``hopline tui``.

    Schema (all counts are integers; ``unacked`` may be null)::

        {"time": <unix s>, "worker": {"index": n, "count": n, "pid": n, "reply_queue": s},
         "active_websockets": n, "pending_requests": n,
         "broker": "connected"|"disconnected", "batching": bool,
         "requests_total": n, "replies_total": n, "errors_total": {"<code>": n},
         "dropped_replies_total": n,
         "queues": {"source": "amqp"|"management", "sampled_at": <unix s>|null,
                    "interval": <s>,
                    "items": [{"name": s, "ready": n, "unacked": n|null, "consumers": n}]}}
    """
    broker, m = gw.broker, gw.metrics
    body = {
        "time": time.time(),
        "worker": _worker(gw),
        "active_websockets": gw.active_websockets,
        "pending_requests": broker.pending_requests,
        "broker": "connected" if broker.connected else "disconnected",
        "batching": broker.batching_active,
        "requests_total": m.total("hopline_requests_total"),
        "replies_total": m.total("hopline_replies_total"),
        "errors_total": {
            code.value: m.total("hopline_errors_total", {"code": code.value}) for code in ErrorCode
        },
        "dropped_replies_total": m.total("hopline_dropped_replies_total"),
        "queues": {
            "source": broker.queue_source,
            "sampled_at": broker.queues_sampled_at,
            "interval": gw.settings.stats_interval,
            "items": [
                {"name": q.name, "ready": q.ready, "unacked": q.unacked, "consumers": q.consumers}
                for q in broker.queues.values()
            ],
        },
    }
    return respond_json(200, body)


async def stream(gw: Gateway, raw_path: str) -> Response:
    """``GET /stream/<message>``: one request; the reply as a ``text/event-stream`` event.

    Errors map to HTTP statuses (504 timeout, 503 busy/unavailable, 413 too large,
    502 processor error) with the error frame of plain mode as the body.
    """
    message = unquote(raw_path)
    if len(message.encode()) > gw.settings.max_message_size:
        return _stream_error(Failure(ErrorCode.TOO_LARGE, "message exceeds the size limit"))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Result] = loop.create_future()

    def on_done(request: Request, result: Result) -> None:
        if not done.done():
            done.set_result(result)

    request = Request(message, on_done, None)
    gw.broker.submit(request)
    try:
        result = await done
    except asyncio.CancelledError:
        gw.broker.cancel(request)
        raise
    if isinstance(result, Failure):
        return _stream_error(result)
    text = result if isinstance(result, str) else result.decode(errors="replace")
    event = "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"
    return respond(200, event, "text/event-stream; charset=utf-8")


def _stream_error(failure: Failure) -> Response:
    status = HTTP_STATUS_BY_CODE[failure.code]
    return respond(status, encode_plain_error(failure.code, failure.message) + "\n", JSON_TYPE)
