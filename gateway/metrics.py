"""Prometheus metrics of one gateway (prometheus-client, own registry per gateway)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.protocol import ErrorCode

__all__ = ["GatewayMetrics"]

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class GatewayMetrics:
    """Counters, gauges and histograms exposed on ``GET /metrics``.

    A private registry per instance keeps several gateways in one process (tests)
    apart. Labelled children are bound once, so the hot path does no label lookups.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hopline_requests", "Requests received from clients", registry=r)
        self.replies = Counter("hopline_replies", "Replies delivered to requests", registry=r)
        self._errors = Counter(
            "hopline_errors", "Requests that ended in an error, by code", ["code"], registry=r
        )
        self._errors_by_code = {code: self._errors.labels(code.value) for code in ErrorCode}
        self.dropped_replies = Counter(
            "hopline_dropped_replies",
            "Replies with an unknown correlation id (late, duplicate or foreign)",
            registry=r,
        )
        self.latency = Histogram(
            "hopline_round_trip_seconds",
            "Time from a request frame read to its reply frame queued",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "hopline_publish_batch_requests",
            "Requests published per event-loop flush",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.active_websockets = Gauge(
            "hopline_active_websockets", "Open WebSocket connections", registry=r
        )
        self.pending_requests = Gauge(
            "hopline_pending_requests", "Requests waiting for a reply", registry=r
        )
        self._queue_depth = Gauge(
            "hopline_queue_ready_messages", "Messages ready in a queue", ["queue"], registry=r
        )

    def errors(self, code: ErrorCode) -> Counter:
        """The error counter of ``code``."""
        return self._errors_by_code[code]

    def queue_depth(self, queue: str) -> Gauge:
        """The ready-messages gauge of ``queue``."""
        return self._queue_depth.labels(queue)

    def bind_gauges(self, active: Callable[[], float], pending: Callable[[], float]) -> None:
        """Read the two live gauges from callables at scrape time (no hot-path updates)."""
        self.active_websockets.set_function(active)
        self.pending_requests.set_function(pending)

    def total(self, sample: str, labels: dict[str, str] | None = None) -> int:
        """Current value of one counter sample (e.g. ``hopline_requests_total``), 0 if absent."""
        return int(self.registry.get_sample_value(sample, labels) or 0)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
