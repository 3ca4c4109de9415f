"""Live queue depths: ready / unacked / consumers per queue with a history, reply traffic,
and where the numbers come from and how fresh they are."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from tui.format import fmt_age, fmt_count, fmt_rate, middle_truncate
from tui.stats import QueueRow, StatsHistory
from tui.widgets.parts import Parts

__all__ = ["QueuePanel", "freshness_line", "queue_line"]

NAME_WIDTH = 16


def header_line() -> Content:
    """Column titles aligned with :func:`queue_line`."""
    return Content.styled(f"{'queue':<{NAME_WIDTH}}{'ready':>6}{'unack':>6}{'cons':>5}", "dim")


def queue_line(row: QueueRow, current: bool = True) -> Content:
    """``name  ready  unacked  consumers``; unacked shows a dash when the source can't tell.

    Not ``current`` (the gateway does not answer, or has lost the broker): dashes, as
    the old numbers would read as today's.
    """
    name = middle_truncate(row.name, NAME_WIDTH)
    parts = Parts()
    if not current:
        parts.append(f"{name:<{NAME_WIDTH}}{'-':>6}{'-':>6}{'-':>5}", "dim")
        return parts.content()
    parts.append(f"{name:<{NAME_WIDTH}}", "bold")
    parts.append(f"{fmt_count(row.ready):>6}")
    parts.append(f"{fmt_count(row.unacked):>6}", "" if row.unacked is not None else "dim")
    style = "" if row.consumers else "$text-warning"
    parts.append(f"{row.consumers:>5}", style)
    return parts.content()


def freshness_line(
    history: StatsHistory, received_at: float | None, error: str | None, now: float
) -> Content:
    """``via <source> · <age> ago``, or why the numbers are stale."""
    latest = history.latest
    parts = Parts()
    if error is not None:
        parts.append("✗ ", "bold $text-error")
        parts.append(error, "$text-error")
        if latest is not None and received_at is not None:
            parts.append(f" · last {fmt_age(now - received_at)} ago", "dim")
        return parts.content()
    if latest is None or received_at is None:
        return Content.styled("waiting for /stats…", "dim italic")
    if latest.broker != "connected":
        parts.append("✗ ", "bold $text-error")
        parts.append(f"broker {latest.broker}: queue numbers unknown", "$text-error")
        return parts.content()
    age = (latest.sample_age or 0.0) + max(0.0, now - received_at)
    parts.append(latest.source_label, "bold")
    stale = age > 3 * max(latest.interval, 1.0)
    parts.append(f" · {fmt_age(age)} ago", "$text-warning" if stale else "dim")
    return parts.content()


class QueueView(Vertical):
    """One queue: its numbers and a sparkline of ready messages."""

    def __init__(self, name: str) -> None:
        super().__init__(classes="queue")
        self.queue_name = name
        self._line = Static(classes="queue-line")
        self._spark = Sparkline([], classes="queue-spark")

    def compose(self) -> ComposeResult:
        yield self._line
        yield self._spark

    def show(self, row: QueueRow, history: list[float], current: bool = True) -> None:
        """Render the latest numbers and the ready history."""
        self._line.update(queue_line(row, current))
        self._spark.data = history


class QueuePanel(Vertical):
    """The input queues of the gateway and its reply traffic, from ``GET /stats``."""

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)
        self.border_title = "queues"
        self._views: dict[str, QueueView] = {}
        self._list = Vertical(id="queue-list")
        self._reply = Static(id="reply-line")
        self._reply_spark = Sparkline([], id="reply-spark")
        self._freshness = Static(
            Content.styled("waiting for /stats…", "dim italic"), id="freshness"
        )

    def compose(self) -> ComposeResult:
        yield Static(header_line(), id="queue-header")
        yield self._list
        yield self._reply
        yield self._reply_spark
        yield self._freshness

    def show(
        self, history: StatsHistory, received_at: float | None, error: str | None, now: float
    ) -> None:
        """Render the latest stats, their history and freshness at monotonic ``now``."""
        latest = history.latest
        current = error is None and (latest is None or latest.broker == "connected")
        self.set_class(not current, "-stale")
        self._freshness.update(freshness_line(history, received_at, error, now))
        if latest is None:
            return
        names = [q.name for q in latest.queues]
        for name in list(self._views):
            if name not in names:
                self._views.pop(name).remove()
        for row in latest.queues:
            view = self._views.get(row.name)
            if view is None:
                view = self._views[row.name] = QueueView(row.name)
                self._list.mount(view)
            view.show(row, list(history.ready.get(row.name, [])), current)
        reply = Parts()
        reply.append("replies ", "dim")
        reply.append(fmt_rate(history.current_reply_rate) if current else "-")
        reply.append("  in flight ", "dim")
        reply.append(fmt_count(latest.pending_requests) if current else "-")
        self._reply.update(reply.content())
        self._reply_spark.data = list(history.reply_rate)
