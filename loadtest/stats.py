"""Measuring and aggregating a load test (pure: no I/O).

Latencies are recorded in microseconds into HDR histograms (1 µs to 1 hour, 3
significant figures, fixed memory whatever the length of the run). A worker keeps
one *interval* histogram, records into it directly and, once a second, encodes it
(a few hundred bytes), ships it to the aggregator and clears it. The aggregator
adds the decoded intervals into the run's total histogram; HDR addition is exact,
so the percentiles of a run split over several processes are the percentiles one
process would have computed from the same samples.

Every request ends in exactly one :class:`Outcome`; the counters of a run add up:
``sent == ok + mismatch + error + timeout + disconnect``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "COUNTER_NAMES",
    "HIGHEST_US",
    "PERCENTILES",
    "Aggregate",
    "Outcome",
    "Recorder",
    "SecondStats",
    "decode",
    "latency_summary",
    "merge_counts",
    "new_histogram",
]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3

# Reported percentiles: name -> percentile.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class Outcome(StrEnum):
    """How one request ended (exactly one per request sent)."""

    OK = "ok"  # a reply that passed verification
    MISMATCH = "mismatch"  # a reply that failed verification (wrong data, wrong order)
    ERROR = "error"  # an error reply (the code is counted separately)
    TIMEOUT = "timeout"  # no reply within the client timeout
    DISCONNECT = "disconnect"  # the connection closed before the reply


# Counters every worker keeps and ships as per-interval deltas.
COUNTER_NAMES: tuple[str, ...] = (
    "sent",  # requests written to a socket
    *(o.value for o in Outcome),
    "unsent",  # open model: due but no open connection to send it on
    "late",  # open model: sent more than LATE_AFTER after its scheduled time
    "unmatched",  # replies for no outstanding request (after a timeout, unknown id)
)


def new_histogram() -> HdrHistogram:
    """An empty latency histogram (microseconds, 1 µs to 1 h, 3 significant figures)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def decode(encoded: bytes) -> HdrHistogram:
    """Decode a histogram produced by :meth:`Recorder.take`."""
    return HdrHistogram.decode(encoded)


class Recorder:
    """An interval histogram with a cheap :meth:`record` for the hot path.

    ``record`` writes straight into the HDR counts array (the index arithmetic of
    ``HdrHistogram.record_value`` without its per-call overhead); :meth:`take`
    fixes up the totals, encodes the interval and clears it.
    """

    __slots__ = ("_counts", "_hist", "_mask", "_shc", "_shift", "_size", "count", "max", "min")

    def __init__(self) -> None:
        hist = new_histogram()
        self._hist = hist
        self._counts = hist.counts
        self._size = ctypes.sizeof(hist.counts)
        self._mask = hist.sub_bucket_mask
        self._shift = hist.sub_bucket_half_count_magnitude
        self._shc = hist.sub_bucket_half_count
        assert hist.unit_magnitude == 0
        self.count = 0
        self.min = HIGHEST_US
        self.max = 0

    def index(self, value: int) -> int:
        """Index of ``value`` in the counts array (same as ``get_counts_array_index``)."""
        bucket = (value | self._mask).bit_length() - self._shift - 1
        return ((bucket + 1) << self._shift) + (value >> bucket) - self._shc

    def record(self, value: int) -> None:
        """Record one latency in microseconds (clamped to 0..1 h)."""
        if value > HIGHEST_US:
            value = HIGHEST_US
        elif value < 0:
            value = 0
        bucket = (value | self._mask).bit_length() - self._shift - 1
        self._counts[((bucket + 1) << self._shift) + (value >> bucket) - self._shc] += 1
        self.count += 1
        if value > self.max:
            self.max = value
        if value < self.min:
            self.min = value

    def take(self) -> bytes:
        """Encode everything recorded since the last call, then clear."""
        hist = self._hist
        hist.total_count = self.count
        hist.min_value = self.min if self.count else 0
        hist.max_value = self.max
        encoded: bytes = hist.encode()
        ctypes.memset(self._counts, 0, self._size)
        self.count, self.min, self.max = 0, HIGHEST_US, 0
        return encoded


def latency_summary(hist: HdrHistogram) -> dict[str, float | int | None]:
    """count, min, mean, p50, p90, p99, p999 and max of ``hist`` in milliseconds.

    Every value but ``count`` is ``None`` when nothing was recorded.
    """
    count = hist.get_total_count()
    if not count:
        return {"count": 0, "min": None, "mean": None, **dict.fromkeys(PERCENTILES), "max": None}
    values = hist.get_percentile_to_value_dict(list(PERCENTILES.values()))
    out: dict[str, float | int | None] = {
        "count": count,
        "min": _ms(hist.get_min_value()),
        "mean": round(hist.get_mean_value() / 1000, 3),
    }
    for name, pct in PERCENTILES.items():
        out[name] = _ms(values[pct])
    out["max"] = _ms(hist.get_max_value())
    return out


def _ms(us: int) -> float:
    return round(us / 1000, 3)


@dataclass
class SecondStats:
    """The counters and latency histogram of one second of the run, all workers merged."""

    second: int
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    hist: HdrHistogram = field(default_factory=new_histogram)
    open_connections: int = 0
    workers: set[int] = field(default_factory=set)  # the workers that reported this second

    def as_json(self) -> dict[str, Any]:
        """One entry of the report's ``series``."""
        summary = latency_summary(self.hist)
        c = self.counters
        return {
            "t": self.second,
            "sent": c["sent"],
            "replies": c["ok"] + c["mismatch"] + c["error"],
            "ok": c["ok"],
            "errors": _errors(c),
            "open_connections": self.open_connections,
            "p50_ms": summary["p50"],
            "p99_ms": summary["p99"],
            "max_ms": summary["max"],
        }


def _errors(c: Mapping[str, int]) -> int:
    return c["mismatch"] + c["error"] + c["timeout"] + c["disconnect"]


class Aggregate:
    """Merges interval reports from any number of workers into run totals and a series.

    Each worker report is a mapping with ``second`` (index of the interval since the
    load started), ``counters`` (deltas), ``codes`` (error-reply deltas by code),
    ``hist`` (an encoded interval histogram) and ``open`` (its open connections).
    """

    def __init__(self) -> None:
        self.total = new_histogram()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.error_codes: dict[str, int] = {}
        self.seconds: dict[int, SecondStats] = {}
        self._open: dict[int, int] = {}

    def add(self, worker: int, report: Mapping[str, Any]) -> None:
        """Fold one interval report of ``worker`` into the totals and the series."""
        second = int(report["second"])
        entry = self.seconds.get(second)
        if entry is None:
            entry = self.seconds[second] = SecondStats(second)
        for name, value in report["counters"].items():
            self.counters[name] += value
            entry.counters[name] += value
        for code, value in report.get("codes", {}).items():
            self.error_codes[code] = self.error_codes.get(code, 0) + value
        hist = decode(report["hist"])
        if hist.get_total_count():
            self.total.add(hist)
            entry.hist.add(hist)
        self._open[worker] = int(report.get("open", 0))
        entry.open_connections = self.open_connections
        entry.workers.add(worker)

    @property
    def open_connections(self) -> int:
        """Connections open at the latest report of each worker."""
        return sum(self._open.values())

    def latest(self) -> SecondStats | None:
        """The most recent second every worker has reported, if any.

        With several worker processes the newest second fills up report by report: its
        rate would read 1/N of the truth until the last worker's report is in. So
        until every worker that has reported so far reported it, the second before
        is the latest (the newest one only when there is no second before).
        """
        if not self.seconds:
            return None
        newest = self.seconds[max(self.seconds)]
        previous = self.seconds.get(newest.second - 1)
        if previous is None or len(newest.workers) >= len(self._open):
            return newest
        return previous

    @property
    def errors(self) -> int:
        """Requests that did not end in a correct reply."""
        return _errors(self.counters)

    @property
    def resolved(self) -> int:
        """Requests that ended in any outcome."""
        return sum(self.counters[o.value] for o in Outcome)

    def series(self) -> list[dict[str, Any]]:
        """Per-second entries, in order (seconds with no report are filled with zeros)."""
        if not self.seconds:
            return []
        out = []
        for second in range(min(self.seconds), max(self.seconds) + 1):
            out.append(self.seconds.get(second, SecondStats(second)).as_json())
        return out


def merge_counts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum mappings of counts key by key."""
    out: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0) + value
    return out
