"""A TUI filled with fixed, realistic data: for snapshot tests and the README screenshot.

No network and a fake clock, so every render is the same. Regenerate the README
screenshot with ``python -m tests.tui.demo docs/tui.svg docs/tui.txt``.
"""

from __future__ import annotations

import asyncio
import io
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot

from tui.app import HoplineApp
from tui.config import TuiSettings
from tui.messages import ConnectionChanged, RepliesReceived, Reply, StatsUpdated
from tui.stats import parse_stats

SIZE = (80, 24)
START = datetime(2026, 11, 30, 21, 4, 5)
T0 = 1000.0  # fake monotonic time of START


class FakeClock:
    """A settable monotonic clock and the matching wall clock."""

    def __init__(self) -> None:
        self.now = T0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.now - T0)


class StubClient:
    """Stands in for GatewayClient: always connected, records what is sent."""

    def __init__(self) -> None:
        self.connected = True
        self.generation = 1
        self.sent: list[tuple[int, str]] = []

    def send(self, request_id: int, data: str, stream: bool = False) -> int:
        self.sent.append((request_id, data))
        return self.generation

    def reconnect_now(self) -> None:
        pass


def demo_app() -> HoplineApp:
    """The app with a fake clock and a stub connection (populate it with :func:`populate`)."""
    clock = FakeClock()
    app = HoplineApp(
        TuiSettings(url="ws://gateway.example:8000/ws", burst=100),
        live=False,
        clock=clock.monotonic,
        wall=clock.wall,
        cursor_blink=False,
        client=StubClient(),  # type: ignore[arg-type]
    )
    app.fake_clock = clock  # type: ignore[attr-defined]
    return app


def stats_doc(at: float, ready: int, unacked: int, replies: int, errors: int) -> dict[str, Any]:
    """A /stats answer as a gateway using the management API would give it."""
    return {
        "time": at,
        "active_websockets": 3,
        "pending_requests": ready + unacked,
        "broker": "connected",
        "batching": False,
        "requests_total": replies + errors,
        "replies_total": replies,
        "errors_total": {"timeout": 0, "busy": errors, "processor_error": 1},
        "dropped_replies_total": 0,
        "queues": {
            "source": "management",
            "sampled_at": at - 1.2,
            "interval": 1.0,
            "items": [
                {"name": "input_queue", "ready": ready, "unacked": unacked, "consumers": 2},
                {"name": "input_queue.batch", "ready": 0, "unacked": 0, "consumers": 2},
            ],
        },
    }


DEPTHS = [0, 0, 40, 85, 60, 30, 12, 0, 0, 0, 0, 25, 70, 90, 55, 20, 5, 0, 12, 48]


async def populate(pilot: Pilot[None]) -> None:
    """Drive the demo app through a short session: chat, an error, a burst, a pending request."""
    app = pilot.app
    assert isinstance(app, HoplineApp)
    clock: FakeClock = app.fake_clock  # type: ignore[attr-defined]
    app.post_message(ConnectionChanged("connected", 1, subprotocol="hopline.v1"))
    replies = 0
    for i, depth in enumerate(DEPTHS):  # twenty /stats answers, one a second
        clock.now = T0 + i
        replies += depth * 3 + 10
        stats = parse_stats(stats_doc(clock.now, depth, min(depth, 8), replies, i // 5))
        app.post_message(StatsUpdated(stats, clock.now))
        await pilot.pause()

    clock.now = T0 + 2
    await pilot.press(*"hello", "enter")
    app.post_message(RepliesReceived([Reply(1, clock.now + 0.0042, data="hello world")]))
    await pilot.pause()

    clock.now = T0 + 4
    await pilot.press(*"café", "enter")
    app.post_message(RepliesReceived([Reply(2, clock.now + 0.0051, data="café world")]))
    await pilot.pause()

    clock.now = T0 + 11
    await pilot.press("ctrl+b")  # burst entry 3 owns ids 4..103
    burst_replies = []
    for n in range(100):
        request_id = 4 + n
        arrival = clock.now + 0.002 + n * 0.004 + (n % 7) * 0.001
        if n % 33 == 32:
            burst_replies.append(
                Reply(request_id, arrival, error_code="busy", error_message="queue full")
            )
        else:
            burst_replies.append(Reply(request_id, arrival, data="hello world"))
    app.post_message(RepliesReceived(burst_replies))
    await pilot.pause()

    clock.now = T0 + 16
    await pilot.press(*"explode", "enter")
    app.post_message(
        RepliesReceived(
            [
                Reply(
                    104,
                    clock.now + 0.0123,
                    error_code="processor_error",
                    error_message="handler raised ValueError",
                )
            ]
        )
    )
    await pilot.pause()

    clock.now = T0 + 18.5
    await pilot.press(*"slow one", "enter")
    clock.now = T0 + 19.6
    await pilot.pause()
    app.refresh_all()


def text_screenshot(app: HoplineApp) -> str:
    """The current screen as plain text (what an SVG screenshot shows, without colours)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


async def capture() -> tuple[str, str]:
    """The populated main screen as (SVG, plain text)."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await populate(pilot)
        await pilot.pause()
        return app.export_screenshot(), text_screenshot(app)


def save(paths: list[str]) -> None:
    """Write the populated main screen to each path: ``.svg`` as an image, else as text."""
    svg, text = asyncio.run(capture())
    for path in paths:
        Path(path).write_text(svg if path.endswith(".svg") else text)


if __name__ == "__main__":
    save(sys.argv[1:] or ["docs/tui.svg", "docs/tui.txt"])
