"""The hopline TUI app: holds the state, routes worker messages to widgets.

Data flow: :class:`~tui.client.GatewayClient` workers post
:mod:`tui.messages`; the handlers here update the pure models
(:class:`~tui.exchanges.Conversation`, :class:`~tui.latency.LatencyWindow`,
:class:`~tui.stats.StatsHistory`) and then the widgets, on the UI side only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from datetime import datetime

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input

from hopline.runtime import INTERRUPTED
from tui.client import GatewayClient
from tui.config import TuiSettings
from tui.exchanges import Conversation, Entry
from tui.help import HelpScreen
from tui.latency import LatencyWindow
from tui.messages import (
    ChunkReceived,
    ConnectionChanged,
    RepliesReceived,
    StatsFailed,
    StatsUpdated,
)
from tui.stats import StatsHistory
from tui.widgets.chat import ChatLog
from tui.widgets.gateway import GatewayPanel
from tui.widgets.latency import LatencyPanel
from tui.widgets.queues import QueuePanel
from tui.widgets.status import ConnectionStatus

__all__ = ["HoplineApp"]

TICK = 0.25  # seconds between refreshes of ages, countdowns and the reply rate
FLUSH_EVERY = 0.1  # least seconds between two re-renders caused by replies (bursts)
RATE_WINDOW = 5.0  # seconds both replies/s figures (gateway's and this client's) average over


class HoplineApp(App[None]):
    """Chat with the processors through a gateway and watch queues and latency move.

    Args:
        settings: what to connect to and how.
        live: start the connection and ``/stats`` workers on mount (tests of the
            layout pass False and post messages themselves).
        clock: monotonic clock (seconds) for round-trip times and ages.
        wall: wall clock for the timestamps shown in the chat.
        cursor_blink: blink the input cursor (snapshot tests turn it off).
        client: the connection to use; by default a :class:`GatewayClient` for
            ``settings`` (tests pass a stand-in with ``connected``, ``generation``,
            ``send``, ``reconnect_now``).
    """

    CSS_PATH = "app.tcss"
    TITLE = "hopline"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+b", "burst", "Burst"),
        Binding("ctrl+r", "reconnect", "Reconnect"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("escape", "toggle_input", "Input", show=False),
        Binding("ctrl+c", "interrupt", "Quit", priority=True),
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(
        self,
        settings: TuiSettings | None = None,
        *,
        live: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
        cursor_blink: bool = True,
        client: GatewayClient | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or TuiSettings()
        self.live = live
        self.clock = clock
        self.wall = wall
        self.cursor_blink = cursor_blink
        self.conversation = Conversation()
        self.latency = LatencyWindow(self.settings.latency_window, rate_window=RATE_WINDOW)
        self.stats = StatsHistory(rate_window=RATE_WINDOW)
        self.stats_received_at: float | None = None
        self.stats_error: str | None = None
        self.connection = ConnectionChanged("connecting", 0)
        self.client = client or GatewayClient(self.settings, self.post_message, clock)
        self._dirty: dict[int, Entry] = {}
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._sigint_loop: asyncio.AbstractEventLoop | None = None

    def compose(self) -> ComposeResult:
        # The app keeps its widgets, so handlers never depend on a DOM query.
        self.status = ConnectionStatus(id="status")
        self.chat = ChatLog(id="chat")
        self.input = Input(
            placeholder="type a message, enter sends", id="message", select_on_focus=False
        )
        self.input.cursor_blink = self.cursor_blink
        self.queue_panel = QueuePanel(id="queues")
        self.latency_panel = LatencyPanel(self.settings.latency_window, id="latency")
        self.gateway_panel = GatewayPanel(id="gateway")
        yield self.status
        with Horizontal(id="main"):
            with Vertical(id="chat-pane"):
                yield self.chat
                yield self.input
            with Vertical(id="side"):
                yield self.queue_panel
                yield self.latency_panel
                yield self.gateway_panel
        yield Footer()

    def on_mount(self) -> None:
        self.input.focus()
        self._show_status()
        self.set_interval(TICK, self.refresh_all)
        if self.live:
            self.run_worker(self.client.run(), name="connection", exclusive=True, group="io")
            self.run_worker(self.client.poll_stats(), name="stats", group="io")
            # SIGINT from outside the terminal (kill -INT) ends the TUI as ctrl+c does.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGINT, self.action_interrupt)
                self._sigint_loop = loop

    def on_unmount(self) -> None:
        if self._sigint_loop is not None:
            self._sigint_loop.remove_signal_handler(signal.SIGINT)
            self._sigint_loop = None

    # User actions

    @on(Input.Submitted, "#message")
    def send_message(self, event: Input.Submitted) -> None:
        """Send the input line as one request; keep it when not connected."""
        text = event.value
        if not text:
            return
        if not self.client.connected:
            self.notify("not connected: your message is kept", severity="warning")
            return
        exchange = self.conversation.request(
            text, self.clock(), self.wall(), self.client.generation
        )
        self.client.send(exchange.id, text, stream=True)
        event.input.clear()
        self._added(exchange)

    def action_burst(self) -> None:
        """Send ``settings.burst`` requests at once."""
        if not self.client.connected:
            self.notify("not connected: no burst sent", severity="warning")
            return
        burst, ids = self.conversation.burst(
            self.settings.burst,
            self.settings.burst_message,
            self.clock(),
            self.wall(),
            self.client.generation,
        )
        for request_id in ids:
            self.client.send(request_id, burst.text)
        self._added(burst)

    def action_interrupt(self) -> None:
        """ctrl+c quits as Ctrl-C ends every hopline command: exit code 130 (q: 0)."""
        self.exit(return_code=INTERRUPTED)

    def action_reconnect(self) -> None:
        """Skip the backoff wait (or retry after giving up)."""
        self.client.reconnect_now()

    def action_clear(self) -> None:
        """Forget the chat log (outstanding requests still count in the latency panel)."""
        self.chat.clear_entries()
        self.conversation.entries.clear()

    def action_help(self) -> None:
        """Show the help screen."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_input(self) -> None:
        """Escape leaves the input line (so q and ? work) and enters it again."""
        if self.input.has_focus:
            self.chat.focus()
        else:
            self.input.focus()

    # Worker messages

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self.connection = message
        if message.state == "connected":
            lost = self.conversation.fail_before(
                message.generation, self.clock(), self.wall(), "sent on an earlier connection"
            )
        else:
            lost = self.conversation.fail_before(
                message.generation + 1,
                self.clock(),
                self.wall(),
                f"connection lost: {message.reason or 'closed'}",
            )
        for entry in lost:
            self._changed(entry)
        self._show_status()

    def on_replies_received(self, message: RepliesReceived) -> None:
        wall = self.wall()
        for reply in message.replies:
            error = (
                (reply.error_code, reply.error_message or "")
                if reply.error_code is not None
                else None
            )
            resolved = self.conversation.resolve(
                reply.request_id, reply.received_at, wall, reply.data, error
            )
            if resolved is None:
                if error is not None:
                    self.notify(f"{error[0]}: {error[1]}", title="gateway error", severity="error")
                continue
            entry, rtt = resolved
            if error is None:
                self.latency.add(reply.received_at, rtt)
            self._changed(entry)

    def on_chunk_received(self, message: ChunkReceived) -> None:
        """A streamed reply grows (re-rendered with the next flush)."""
        entry = self.conversation.chunk(message.request_id, message.data, message.received_at)
        if entry is not None:
            self._changed(entry)

    def on_stats_updated(self, message: StatsUpdated) -> None:
        self.stats.add(message.stats)
        self.stats_received_at = message.received_at
        self.stats_error = None
        self._show_stats()

    def on_stats_failed(self, message: StatsFailed) -> None:
        self.stats_error = message.reason
        self._show_stats()

    # Rendering

    def _added(self, entry: Entry) -> None:
        self.chat.drop_entries(self.conversation.pop_dropped())
        self.chat.add_entry(entry)
        self._show_status()

    def _changed(self, entry: Entry) -> None:
        """Mark ``entry`` for re-rendering: at once when idle, at most every FLUSH_EVERY s."""
        self._dirty[id(entry)] = entry
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        wait = self._last_flush + FLUSH_EVERY - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._flush)
        else:
            self.call_later(self._flush)

    def _flush(self) -> None:
        """Re-render what changed since the last flush (a burst's replies coalesce)."""
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        for entry in self._dirty.values():
            self.chat.update_entry(entry)
        self._dirty.clear()
        self._show_latency()
        self._show_status()

    def refresh_all(self) -> None:
        """Re-render the status, latency and stats panels (ages, countdowns, rates move)."""
        self._show_latency()
        self._show_status()
        self._show_stats()

    def _show_status(self) -> None:
        self.status.show(
            self.connection,
            self.settings.url,
            self.clock(),
            self.conversation.outstanding,
            self.settings.burst,
        )

    def _show_latency(self) -> None:
        now = self.clock()
        self.latency_panel.show(self.latency.summary(now), self.latency.history(now))

    def _show_stats(self) -> None:
        self.queue_panel.show(self.stats, self.stats_received_at, self.stats_error, self.clock())
        self.gateway_panel.show(self.stats.latest, self.stats_error)
