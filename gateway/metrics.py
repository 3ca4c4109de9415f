"""Prometheus metrics of one gateway (prometheus-client exposition, own registry per gateway).

The hot path (every request) only adds to plain integers: prometheus-client's
counters and histograms take a lock on every update (0.7 to 1.3 us each, about 5 %
of the gateway's Python time under load). A collector turns the integers into
metric families when ``/metrics`` is scraped, so the exposition stays the library's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hopline.wire.errors import ErrorCode

__all__ = ["Count", "GatewayMetrics", "Histogram"]

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
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Count:
    """A counter updated from the event loop only (no lock)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        """Add ``amount``."""
        self.value += amount


class Histogram:
    """Fixed-bucket histogram updated from the event loop only (no lock).

    Bucket ``i`` counts observations ``<= bounds[i]`` (Prometheus' ``le``); the last
    one counts the rest (``+Inf``).
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The histogram as a Prometheus metric family (cumulative buckets)."""
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class GatewayMetrics(Collector):
    """Counters, gauges and histograms exposed on ``GET /metrics``.

    A private registry per instance keeps several gateways in one process (tests)
    apart. Per-code error counters are bound once, so the hot path does no lookups.
    """

    def __init__(self) -> None:
        self.requests = Count()
        self.replies = Count()
        self.dropped_replies = Count()
        self._errors_by_code = {code: Count() for code in ErrorCode}
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(self)
        self.active_websockets = Gauge(
            "hopline_active_websockets", "Open WebSocket connections", registry=r
        )
        self.pending_requests = Gauge(
            "hopline_pending_requests", "Requests waiting for a reply", registry=r
        )
        self._queue_depth = Gauge(
            "hopline_queue_ready_messages", "Messages ready in a queue", ["queue"], registry=r
        )

    def collect(self) -> Iterator[Metric]:
        """The hot-path counters as metric families (called by the registry at scrape time)."""
        yield CounterMetricFamily(
            "hopline_requests", "Requests received from clients", value=self.requests.value
        )
        yield CounterMetricFamily(
            "hopline_replies", "Replies delivered to requests", value=self.replies.value
        )
        errors = CounterMetricFamily(
            "hopline_errors", "Requests that ended in an error, by code", labels=["code"]
        )
        for code, count in self._errors_by_code.items():
            errors.add_metric([code.value], count.value)
        yield errors
        yield CounterMetricFamily(
            "hopline_dropped_replies",
            "Replies with an unknown correlation id (late, duplicate or foreign)",
            value=self.dropped_replies.value,
        )
        yield self.latency.family(
            "hopline_round_trip_seconds", "Time from a request frame read to its reply frame queued"
        )
        yield self.batch_size.family(
            "hopline_publish_batch_requests", "Requests published per event-loop flush"
        )

    def errors(self, code: ErrorCode) -> Count:
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
