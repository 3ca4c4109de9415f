"""Plain HTTP endpoints served before the WebSocket upgrade: /health, /metrics, /stats,
/client.js, and the browser rules every route shares (methods, preflight, origin policy,
CORS; see :mod:`gateway.cors`). ``/stream`` lives in :mod:`gateway.sse`.

Each function takes the gateway state it reads and returns a websockets
:class:`~websockets.http11.Response`; none of them raises for a client's input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from functools import cache
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from gateway import cors
from gateway.security import header_values
from hopline.wire.errors import ErrorCode

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = [
    "client_js",
    "cors_for",
    "decorate",
    "health",
    "metrics",
    "not_found",
    "screen",
    "stats",
]

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
ROUTES = ["/ws", "/stream/<message>", "/health", "/metrics", "/stats", "/client.js"]


def respond(status: int, body: bytes | str, content_type: str, **headers: str) -> Response:
    """A complete HTTP response; the connection closes after it.

    A ``204`` has neither body nor ``Content-Type``/``Content-Length``.
    """
    data = body.encode() if isinstance(body, str) else body
    if status == 204:
        hdrs = Headers([("Cache-Control", "no-store"), ("Connection", "close")])
        data = b""
    else:
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


def _runs_requests(path: str) -> bool:
    return path == "/ws" or path.startswith("/stream/")


def screen(gw: Gateway, request: HttpRequest, path: str) -> Response | None:
    """The browser rules every route shares, before routing; None lets the request through.

    * a method the route does not answer: ``405`` with ``Allow``;
    * ``OPTIONS`` (a CORS preflight or not): ``204`` with ``Allow`` and, for an allowed
      origin, the preflight grants;
    * on ``/ws`` and ``/stream``: the origin policy (:func:`gateway.cors.origin_refusal`),
      ``403`` with the reason.

    Nothing is published for any of these.
    """
    method = request.method
    methods = cors.allowed_methods(path)
    if method not in methods:
        allow = ", ".join(methods)
        return respond(405, f"method {method} not allowed\n", "text/plain", Allow=allow)
    allowed = gw.settings.allowed_origins
    if method == "OPTIONS":
        return respond(204, b"", "", **cors.preflight_headers(path, request.headers, allowed))
    if _runs_requests(path):
        refusal = cors.origin_refusal(request.headers, allowed)
        if refusal is not None:
            log.debug("refused a request to %s: %s", "/ws" if path == "/ws" else "/stream", refusal)
            return respond(403, f"{refusal}\n", "text/plain")
    return None


def cors_for(gw: Gateway, request: HttpRequest) -> dict[str, str]:
    """The CORS headers of a response to ``request`` (:func:`gateway.cors.cors_headers`)."""
    path = urlsplit(request.path).path
    return cors.cors_headers(path, request.headers, gw.settings.allowed_origins)


def decorate(gw: Gateway, request: HttpRequest, response: Response) -> Response | None:
    """websockets' ``process_response``: CORS headers on readable routes; no body for HEAD.

    Returns None (keep ``response``) for WebSocket upgrades and other routes.
    """
    if response.status_code == 101:
        return None
    extra = {} if "Vary" in response.headers else cors_for(gw, request)
    if not extra and request.method != "HEAD":
        return None
    headers = response.headers.copy()
    for name, value in extra.items():
        headers[name] = value
    body = b"" if request.method == "HEAD" else response.body
    return dataclasses.replace(response, headers=headers, body=body)


def respond_json(status: int, obj: Any) -> Response:
    """A JSON response."""
    return respond(status, json.dumps(obj) + "\n", JSON_TYPE)


def not_found(path: str) -> Response:
    """404 for an unknown path, listing the known ones."""
    return respond_json(404, {"error": f"no route for {path}", "routes": ROUTES})


def health(gw: Gateway) -> Response:
    """``GET /health``: 200 ``healthy`` while requests can be served, else 503.

    Healthy means: the reply path and publish channel are up (``broker``), the
    gateway is not draining, and the input queues are reachable and consumed
    (``input_queue``: ``ok`` or the reason; see :class:`gateway.monitor.QueueMonitor`).

    Everything in it is this process' own; ``worker`` says which of the gateway
    processes sharing the port (``--workers``) answered: ``index`` (0-based),
    ``count``, ``pid`` and its ``reply_queue``.
    """
    connected = gw.broker.connected
    problem = gw.broker.monitor.input_problem() if connected else None
    healthy = connected and not gw.draining and problem is None
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "active_websockets": gw.active_websockets,
        "pending_requests": gw.broker.pending_requests,
        "broker": "connected" if connected else "disconnected",
        "broker_node": gw.broker.broker_address,
        "input_queue": problem or "ok",
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
                    "items": [{"name": s, "ready": n, "unacked": n|null, "consumers": n,
                               "type": s|null, "leader": s|null}]}}

    ``type`` and ``leader`` (the node holding the queue or its quorum leader) are
    known only with ``--management-url``.
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
                {
                    "name": q.name,
                    "ready": q.ready,
                    "unacked": q.unacked,
                    "consumers": q.consumers,
                    "type": q.type,
                    "leader": q.leader,
                }
                for q in broker.queues.values()
            ],
        },
    }
    return respond_json(200, body)


@cache
def _client_source() -> tuple[bytes, str]:
    data = resources.files("gateway").joinpath("static/client.js").read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:20] + '"'


def client_js(request: HttpRequest) -> Response:
    """``GET /client.js``: the browser client (an ES module), readable from any origin.

    It is a public static file, so ``Access-Control-Allow-Origin: *`` (module scripts
    load in CORS mode); browsers revalidate it with its ``ETag`` (``304`` when unchanged).
    """
    data, etag = _client_source()
    headers = Headers(
        [
            ("Cache-Control", "no-cache"),
            ("ETag", etag),
            ("Access-Control-Allow-Origin", "*"),
            ("Connection", "close"),
        ]
    )
    if any(etag in value for value in header_values(request.headers, "If-None-Match")):
        return Response(304, "Not Modified", headers, b"")
    headers["Content-Type"] = "text/javascript; charset=utf-8"
    headers["Content-Length"] = str(len(data))
    return Response(200, "OK", headers, data)
