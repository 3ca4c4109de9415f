"""Round-trip latency over a sliding window: percentiles, rate and a per-second history (pure).

Times are plain floats in seconds on one monotonic clock supplied by the caller,
so the maths is testable without a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["LatencySummary", "LatencyWindow", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of an ascending, non-empty list."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """What the latency panel shows; times in seconds, None before the first reply."""

    count: int
    last: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    rate: float  # replies per second over the rate window


class LatencyWindow:
    """Round-trip times of the last ``window`` seconds.

    Args:
        window: seconds of samples the percentiles cover.
        rate_window: seconds the reply rate is averaged over.
        history: per-second buckets kept for the sparkline.
        max_samples: most samples kept (oldest dropped first), bounding memory
            and the cost of a summary under heavy bursts.
    """

    def __init__(
        self,
        window: float = 30.0,
        rate_window: float = 5.0,
        history: int = 60,
        max_samples: int = 20_000,
    ) -> None:
        self.window = window
        self.rate_window = rate_window
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._buckets: deque[tuple[int, list[float]]] = deque(maxlen=history)
        self._history_len = history
        self.last: float | None = None

    def add(self, at: float, rtt: float) -> None:
        """Record one reply received at ``at`` that took ``rtt`` seconds."""
        self._samples.append((at, rtt))
        self.last = rtt
        second = int(at)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1].append(rtt)
        else:
            self._buckets.append((second, [rtt]))

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def summary(self, now: float) -> LatencySummary:
        """Percentiles of the samples in ``(now - window, now]`` and the recent reply rate."""
        self._expire(now)
        rtts = sorted(rtt for _, rtt in self._samples)
        recent = sum(1 for at, _ in self._samples if at > now - self.rate_window)
        rate = recent / self.rate_window
        if not rtts:
            return LatencySummary(0, self.last, None, None, None, rate)
        return LatencySummary(
            len(rtts),
            self.last,
            percentile(rtts, 50),
            percentile(rtts, 95),
            percentile(rtts, 99),
            rate,
        )

    def history(self, now: float) -> list[float]:
        """p95 round-trip time of each of the last seconds (0 for seconds without replies)."""
        current = int(now)
        by_second = {second: values for second, values in self._buckets}
        out: list[float] = []
        for second in range(current - self._history_len + 1, current + 1):
            values = by_second.get(second)
            out.append(percentile(sorted(values), 95) if values else 0.0)
        return out
