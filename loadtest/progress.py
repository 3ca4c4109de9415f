"""Progress while a load test runs: a rich live line on a terminal, plain lines otherwise.

The display is fed the merged :class:`~loadtest.stats.Aggregate` after every
interval report and shows elapsed/total, open connections, sent, received, the
rate and p99 of the latest second every worker has reported, and errors.

* ``live`` (stderr is a terminal): one line redrawn in place.
* ``plain`` (CI logs, pipes): one line every :data:`PLAIN_INTERVAL` seconds on a
  clock of its own, whether or not reports came in meanwhile. The clock starts
  with the first report and each line is due half a second after a report's
  usual arrival (the workers report once a second, all on the same schedule),
  so a line never races the report it would show.
* ``quiet``: nothing.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Literal

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtest.config import LoadSettings
from loadtest.stats import Aggregate, latency_summary

__all__ = ["PLAIN_INTERVAL", "Progress"]

PLAIN_INTERVAL = 2.0  # seconds between two plain progress lines
PLAIN_OFFSET = 0.5  # seconds from a report's arrival to the plain line due with it
Mode = Literal["live", "plain", "quiet"]


class Progress:
    """Shows the state of a run on stderr; use as a context manager around the run.

    :meth:`update` may be called from any one thread (the run's); plain lines are
    printed by a thread of the display's own, from the line :meth:`update` rendered.
    """

    def __init__(self, settings: LoadSettings, mode: Mode, console: Console) -> None:
        self.settings = settings
        self.mode = mode
        self.console = console
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._text: str | None = None  # the latest plain line, rendered by update()
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.mode == "live":
            self._live = Live(
                Text("connecting..."), console=self.console, refresh_per_second=4, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, agg: Aggregate) -> None:
        """Redraw (live), or keep the line the next plain tick prints (plain)."""
        if self.mode == "quiet":
            return
        if self.mode == "plain":
            text = self.line(agg)
            with self._lock:
                self._text = text
            if self._ticker is None and not self._closed.is_set():
                first = time.monotonic() + PLAIN_OFFSET
                self._ticker = threading.Thread(
                    target=self._tick, args=(first,), name="loadtest-progress", daemon=True
                )
                self._ticker.start()
        elif self._live is not None:
            self._live.update(Text(self.line(agg, compact=True), no_wrap=True, overflow="ellipsis"))

    def _tick(self, due: float) -> None:
        """Print the latest line at ``due`` and every PLAIN_INTERVAL after, until closed."""
        while not self._closed.wait(max(0.0, due - time.monotonic())):
            with self._lock:
                text = self._text
            if text is not None:
                self.console.print(text, highlight=False, markup=False)
            due += PLAIN_INTERVAL
            late = time.monotonic() - due
            if late > 0:  # the process was suspended: keep to the schedule, skip the missed
                due += math.ceil(late / PLAIN_INTERVAL) * PLAIN_INTERVAL

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
