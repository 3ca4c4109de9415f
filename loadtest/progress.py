"""Progress while a load test runs: a rich live line on a terminal, plain lines otherwise.

The display is fed the merged :class:`~loadtest.stats.Aggregate` after every
interval report and shows elapsed/total, open connections, sent, received, the
rate and p99 of the latest second, and errors. ``quiet`` shows nothing.
"""

from __future__ import annotations

import math
import time
from typing import Literal

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtest.config import LoadSettings
from loadtest.stats import Aggregate, latency_summary

__all__ = ["PLAIN_INTERVAL", "Progress"]

PLAIN_INTERVAL = 2.0  # seconds between two plain progress lines
Mode = Literal["live", "plain", "quiet"]


class Progress:
    """Shows the state of a run on stderr; use as a context manager around the run."""

    def __init__(self, settings: LoadSettings, mode: Mode, console: Console) -> None:
        self.settings = settings
        self.mode = mode
        self.console = console
        self._live: Live | None = None
        self._last_plain = 0.0

    def __enter__(self) -> Progress:
        if self.mode == "live":
            self._live = Live(
                Text("connecting..."), console=self.console, refresh_per_second=4, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, agg: Aggregate) -> None:
        """Redraw (live) or print a line if one is due (plain)."""
        if self.mode == "quiet":
            return
        if self.mode == "plain":
            now = time.monotonic()
            if now - self._last_plain < PLAIN_INTERVAL:
                return
            self._last_plain = now
            self.console.print(self.line(agg), highlight=False, markup=False)
        elif self._live is not None:
            self._live.update(Text(self.line(agg, compact=True), no_wrap=True, overflow="ellipsis"))

    def line(self, agg: Aggregate, *, compact: bool = False) -> str:
        """One line describing the run so far (``compact`` for the live display)."""
        s = self.settings
        latest = agg.latest()
        second = latest.second if latest is not None else -1
        c = agg.counters
        if second < 0:
            phase = f"ramp-up {s.ramp_up:g}s"
        elif s.duration is not None:
            phase = f"{min(second + 1, math.ceil(s.duration))}s/{s.duration:g}s"
        else:
            phase = f"{second + 1}s, {c['sent']}/{s.requests} requests"
        replies = c["ok"] + c["mismatch"] + c["error"]
        rate = p99 = "-"
        if latest is not None:
            lc = latest.counters
            rate = f"{lc['ok'] + lc['mismatch'] + lc['error']}/s"
            p99_ms = latency_summary(latest.hist)["p99"]
            p99 = "-" if p99_ms is None else f"{p99_ms:.1f} ms"
        if compact:
            return (
                f"{phase}  conns {agg.open_connections}/{s.connections}  sent {c['sent']}  "
                f"recv {replies}  {rate}  p99 {p99}  errors {agg.errors}"
            )
        return (
            f"loadtest {phase} · conns {agg.open_connections}/{s.connections} · "
            f"sent {c['sent']} · recv {replies} · rate {rate} · p99 {p99} · errors {agg.errors}"
        )
