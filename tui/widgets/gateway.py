"""The gateway's own health from ``/stats``: broker link, sockets, error counts."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.format import fmt_count
from tui.stats import GatewayStats
from tui.widgets.parts import Parts

__all__ = ["GatewayPanel", "gateway_lines"]


def gateway_lines(stats: GatewayStats | None, error: str | None = None) -> Content:
    """``broker connected · n sockets`` and the non-zero error counters.

    While ``/stats`` does not answer (``error``), nothing the gateway said before is
    shown as current: the broker's state is unknown.
    """
    if error is not None:
        parts = Parts()
        parts.append("broker ", "dim")
        parts.append("unknown", "bold $text-warning")
        parts.append(" · gateway not answering", "dim")
        return parts.content()
    if stats is None:
        return Content.styled("no /stats answer yet", "dim italic")
    parts = Parts()
    parts.append("broker ", "dim")
    ok = stats.broker == "connected"
    parts.append(stats.broker, "bold $text-success" if ok else "bold $text-error")
    parts.append(f" · {stats.active_websockets} socket", "dim")
    parts.append("s" if stats.active_websockets != 1 else "", "dim")
    parts.append("\nerrors ", "dim")
    errors = [(code, n) for code, n in sorted(stats.errors_total.items()) if n]
    if not errors:
        parts.append("none", "dim")
    for index, (code, n) in enumerate(errors):
        parts.append(" · " if index else "", "dim")
        parts.append(f"{fmt_count(n)} {code}", "$text-error")
    return parts.content()


class GatewayPanel(Static):
    """Two lines about the gateway itself."""

    def __init__(self, **kwargs: str) -> None:
        super().__init__(gateway_lines(None), **kwargs)
        self.border_title = "gateway"

    def show(self, stats: GatewayStats | None, error: str | None = None) -> None:
        """Render the latest stats (or that there are none to trust, see gateway_lines)."""
        self.update(gateway_lines(stats, error))
