"""The gateway's ``GET /stats`` document, parsed, and a short history of it (pure).

Schema: see :func:`gateway.http.stats`. Unknown fields are ignored and missing
ones get neutral values, so an older or newer gateway still shows what it can.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GatewayStats", "QueueRow", "StatsFormatError", "StatsHistory", "parse_stats"]

SOURCE_LABELS = {
    "amqp": "AMQP passive declare",
    "management": "management API",
}


class StatsFormatError(ValueError):
    """The document is not a /stats object."""


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue's depth; ``unacked`` is None when the source can't tell."""

    name: str
    ready: int
    unacked: int | None
    consumers: int


@dataclass(frozen=True, slots=True)
class GatewayStats:
    """One ``/stats`` answer. Times are the gateway's unix seconds."""

    time: float
    broker: str
    active_websockets: int
    pending_requests: int
    requests_total: int
    replies_total: int
    errors_total: dict[str, int]
    source: str
    sampled_at: float | None
    interval: float
    queues: tuple[QueueRow, ...] = field(default=())

    @property
    def source_label(self) -> str:
        """Where the queue numbers come from, for people."""
        return SOURCE_LABELS.get(self.source, self.source)

    @property
    def sample_age(self) -> float | None:
        """Seconds between the queue sample and this answer, on the gateway's clock."""
        return None if self.sampled_at is None else max(0.0, self.time - self.sampled_at)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def parse_stats(doc: Any) -> GatewayStats:
    """Build :class:`GatewayStats` from the decoded JSON of ``/stats``.

    Raises:
        StatsFormatError: ``doc`` is not an object with a numeric ``time``.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("time"), int | float):
        raise StatsFormatError("/stats did not return a stats object")
    queues = doc.get("queues") if isinstance(doc.get("queues"), dict) else {}
    rows = []
    for item in queues.get("items") or []:
        if not isinstance(item, dict):
            continue
        unacked = item.get("unacked")
        rows.append(
            QueueRow(
                name=str(item.get("name", "?")),
                ready=_int(item.get("ready")),
                unacked=None if unacked is None else _int(unacked),
                consumers=_int(item.get("consumers")),
            )
        )
    errors = doc.get("errors_total") if isinstance(doc.get("errors_total"), dict) else {}
    sampled_at = queues.get("sampled_at")
    return GatewayStats(
        time=float(doc["time"]),
        broker=str(doc.get("broker", "unknown")),
        active_websockets=_int(doc.get("active_websockets")),
        pending_requests=_int(doc.get("pending_requests")),
        requests_total=_int(doc.get("requests_total")),
        replies_total=_int(doc.get("replies_total")),
        errors_total={str(k): _int(v) for k, v in errors.items()},
        source=str(queues.get("source", "amqp")),
        sampled_at=float(sampled_at) if isinstance(sampled_at, int | float) else None,
        interval=float(queues.get("interval") or 1.0),
        queues=tuple(rows),
    )


class StatsHistory:
    """The latest stats plus a short history for sparklines.

    Keeps, per queue, the last ``length`` ready counts, and the gateway's reply rate:
    replies and errors per second over the last ``rate_window`` seconds of the
    gateway's clock (from the counters of the answer at or just before the start of
    the window to the latest), one value per answer. Before a whole window has been
    seen, the rate covers what has been (from the first answer); a restarted gateway
    (its counters went back) starts the window again.
    """

    def __init__(self, length: int = 60, rate_window: float = 5.0) -> None:
        self.length = length
        self.rate_window = rate_window
        self.latest: GatewayStats | None = None
        self.ready: dict[str, deque[float]] = {}
        self.reply_rate: deque[float] = deque(maxlen=length)
        self.in_flight: deque[float] = deque(maxlen=length)
        self._answered: deque[tuple[float, int]] = deque()  # (gateway time, replies + errors)

    def add(self, stats: GatewayStats) -> None:
        """Append one answer (answers older than the latest are ignored)."""
        previous = self.latest
        if previous is not None and stats.time <= previous.time:
            return
        self.latest = stats
        names = {q.name for q in stats.queues}
        for name in list(self.ready):
            if name not in names:
                del self.ready[name]
        for q in stats.queues:
            self.ready.setdefault(q.name, deque(maxlen=self.length)).append(float(q.ready))
        self.in_flight.append(float(stats.pending_requests))
        answered = _answered(stats)
        if self._answered and answered < self._answered[-1][1]:
            self._answered.clear()  # a restarted gateway starts its counters again from 0
        self._answered.append((stats.time, answered))
        horizon = stats.time - self.rate_window
        while len(self._answered) > 1 and self._answered[1][0] <= horizon:
            self._answered.popleft()
        if len(self._answered) > 1:
            (since, before), (now, done) = self._answered[0], self._answered[-1]
            self.reply_rate.append((done - before) / (now - since))
        elif previous is not None:
            self.reply_rate.append(0.0)

    @property
    def current_reply_rate(self) -> float | None:
        """Replies (incl. errors) per second over the last ``rate_window`` seconds."""
        return self.reply_rate[-1] if self.reply_rate else None


def _answered(stats: GatewayStats) -> int:
    return stats.replies_total + sum(stats.errors_total.values())
