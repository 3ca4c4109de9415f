"""Snapshot tests of the TUI's screens at 80x24 with fixed data (no network, fake clock)."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from tests.tui.demo import SIZE, demo_app, populate
from tui.messages import ConnectionChanged

SnapCompare = Callable[..., bool]


def test_main_screen(snap_compare: SnapCompare) -> None:
    """Chat with replies, an error, a burst and a pending request; live panels filled."""
    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=populate)


def test_help_screen(snap_compare: SnapCompare) -> None:
    """F1 shows the help screen over the main screen."""

    async def open_help(pilot: Pilot[None]) -> None:
        await populate(pilot)
        await pilot.press("f1")

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=open_help)


def test_reconnecting_screen(snap_compare: SnapCompare) -> None:
    """A lost connection: status counts down to the next attempt, the pending request failed."""

    async def lose_connection(pilot: Pilot[None]) -> None:
        await populate(pilot)
        app = pilot.app
        clock = app.fake_clock  # type: ignore[attr-defined]
        app.post_message(
            ConnectionChanged(
                "reconnecting", 1, "gateway went away (1001)", 3, retry_at=clock.now + 1.5
            )
        )
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=lose_connection)
