"""Round-trip latency of this TUI's requests: last, p50/p95/p99, rate, and a p95 history."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from tui.format import fmt_duration, fmt_rate
from tui.latency import LatencySummary
from tui.widgets.parts import Parts

__all__ = ["LatencyPanel", "latency_lines"]


def latency_lines(summary: LatencySummary, window: float) -> Content:
    """Three lines: last/p50, p95/p99, rate and sample count."""
    parts = Parts()
    for label, value, end in (
        ("last", summary.last, "  "),
        ("p50", summary.p50, "\n"),
        ("p95", summary.p95, "  "),
        ("p99", summary.p99, "\n"),
    ):
        parts.append(f"{label:<5}", "dim")
        parts.append(f"{fmt_duration(value):>9}", "bold")
        parts.append(end)
    parts.append("rate ", "dim")
    parts.append(f"{fmt_rate(summary.rate):>9}", "bold")
    parts.append(f"  {summary.count} in {window:g} s", "dim")
    return parts.content()


class LatencyPanel(Vertical):
    """Latency over a sliding window; the sparkline shows each second's p95."""

    def __init__(self, window: float, **kwargs: str) -> None:
        super().__init__(**kwargs)
        self.window = window
        self.border_title = "round trip"
        self._numbers = Static(
            latency_lines(LatencySummary(0, None, None, None, None, 0.0), window),
            id="latency-numbers",
        )
        self._spark = Sparkline([], id="latency-spark")

    def compose(self) -> ComposeResult:
        yield self._numbers
        yield self._spark

    def show(self, summary: LatencySummary, history: list[float]) -> None:
        """Render a summary and the per-second p95 history."""
        self._numbers.update(latency_lines(summary, self.window))
        self._spark.data = history
