"""One-line connection status: connecting / connected / reconnecting with backoff / failed."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.glyphs import TIMES
from tui.messages import ConnectionChanged
from tui.widgets.parts import Parts as _Parts

__all__ = ["ConnectionStatus", "render_status"]

ICONS = {"connecting": "◌", "connected": "●", "reconnecting": "◌", "failed": "✗"}


def render_status(
    state: ConnectionChanged, url: str, now: float, outstanding: int, burst: int
) -> Content:
    """The status line for ``state`` at monotonic time ``now``."""
    text = _Parts()
    text.append(f"{ICONS[state.state]} {state.state}", style="bold")
    if state.state == "connected":
        text.append(f"  {url}")
        text.append(f"  {outstanding} waiting" if outstanding else "  idle", style="dim")
        text.append(f"  burst {TIMES}{burst}", style="dim")
    elif state.state == "connecting":
        text.append(f" to {url}")
    elif state.state == "reconnecting":
        if state.retry_at is not None:
            text.append(f" in {max(0.0, state.retry_at - now):.1f} s")
        else:
            text.append(" now")
        text.append(f" (attempt {state.attempt})", style="dim")
        if state.reason:
            text.append(f": {state.reason}")
    else:
        text.append(f": {state.reason or 'gave up'}")
        text.append("  ctrl+r retries", style="dim")
    return text.content()


class ConnectionStatus(Static):
    """Shows the last :class:`ConnectionChanged`; CSS class ``-<state>`` colours it."""

    def show(
        self, state: ConnectionChanged, url: str, now: float, outstanding: int, burst: int
    ) -> None:
        """Render ``state`` (call again to count down a reconnection delay)."""
        for name in ICONS:
            self.set_class(name == state.state, f"-{name}")
        self.update(render_status(state, url, now, outstanding, burst))
