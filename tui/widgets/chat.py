"""The chat log: one entry per request (or burst), its reply or error right below it."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.exchanges import Burst, Entry, Exchange
from tui.format import fmt_duration
from tui.glyphs import RECEIVED, SENT, TIMES
from tui.latency import percentile
from tui.widgets.parts import Parts as _Parts

__all__ = ["ChatLog", "EntryView", "render_entry"]

PAD = " " * 9  # under the "HH:MM:SS " timestamp


def render_entry(entry: Entry) -> Content:
    """Two or more lines: the request with its time, then its outcome."""
    text = _Parts()
    text.append(entry.sent_wall.strftime("%H:%M:%S "), style="dim")
    if isinstance(entry, Exchange):
        text.append(f"{SENT} ", style="bold")
        text.append(entry.text)
        text.append("\n")
        _exchange_outcome(text, entry)
    else:
        text.append("⇶ ", style="bold")
        text.append(f"burst {TIMES}{entry.count} ", style="bold")
        text.append(repr(entry.text), style="dim")
        text.append("\n")
        _burst_outcome(text, entry)
    return text.content()


def _exchange_outcome(text: _Parts, entry: Exchange) -> None:
    stamp = entry.received_wall.strftime("%H:%M:%S ") if entry.received_wall else PAD
    text.append(stamp, style="dim")
    if entry.error_code is not None:
        text.append("\u2717 ", style="bold $text-error")
        text.append(f" {entry.error_code} ", style="bold reverse $text-error")
        text.append(f"  {fmt_duration(entry.rtt)}", style="$text-accent")
        if entry.error_message:
            text.append("\n" + PAD)
            text.append(entry.error_message, style="$text-error")
    elif entry.reply is not None:
        text.append(f"{RECEIVED} ", style="bold $text-success")
        text.append(entry.reply)
        if entry.chunks > 1 and entry.first_chunk is not None:
            text.append(
                f"  {entry.chunks} chunks · first {fmt_duration(entry.first_chunk)} · "
                f"total {fmt_duration(entry.rtt)}",
                style="$text-accent",
            )
        else:
            text.append(f"  {fmt_duration(entry.rtt)}", style="$text-accent")
    elif entry.chunks > 1:  # a streamed reply (one frame so far may be the whole reply)
        text.append(f"{RECEIVED} ", style="bold")
        text.append(entry.partial)
        text.append("\u2026", style="dim")
        text.append(
            f"  {entry.chunks} chunks · first {fmt_duration(entry.first_chunk)}",
            style="$text-accent",
        )
    else:
        text.append(f"{RECEIVED} \u2026waiting", style="dim italic")


def _burst_outcome(text: _Parts, entry: Burst) -> None:
    text.append(PAD)
    style = "$text-error" if entry.failed else "$text-success"
    text.append(f"{RECEIVED} ", style=f"bold {style}")
    text.append(f"{entry.ok} ok")
    for code, n in sorted(entry.errors.items()):
        text.append(" · ")
        text.append(f"{n} {code}", style="bold $text-error")
    if entry.finished_at is not None:
        text.append(f" · {fmt_duration(entry.finished_at - entry.sent_at)}", style="$text-accent")
    else:
        text.append(f" · {len(entry.pending)} left\u2026", style="dim")
    if entry.rtts:
        rtts = sorted(entry.rtts)
        text.append("\n" + PAD)
        text.append(
            f"  p50 {fmt_duration(percentile(rtts, 50))} · "
            f"p99 {fmt_duration(percentile(rtts, 99))}",
            style="dim",
        )


class EntryView(Static):
    """One request (or burst) and its outcome."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(render_entry(entry), classes="entry")
        self.entry = entry
        self.refresh_entry()

    def refresh_entry(self) -> None:
        """Re-render after the entry changed."""
        entry = self.entry
        failed = (isinstance(entry, Exchange) and entry.error_code is not None) or (
            isinstance(entry, Burst) and entry.failed > 0
        )
        self.set_class(failed, "-error")
        self.set_class(entry.done and not failed, "-done")
        self.update(render_entry(entry))


class ChatLog(VerticalScroll):
    """Entries in the order they were sent; follows the end unless scrolled up."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.border_title = "chat"
        self._views: dict[int, EntryView] = {}

    def add_entry(self, entry: Entry) -> None:
        """Append a view for a new entry and scroll to it if we were following the end."""
        follow = self.is_vertical_scroll_end or self.max_scroll_y == 0
        view = EntryView(entry)
        self._views[id(entry)] = view
        self.mount(view)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    def update_entry(self, entry: Entry) -> None:
        """Re-render the view of ``entry`` (ignored if it was dropped)."""
        view = self._views.get(id(entry))
        if view is not None:
            follow = self.is_vertical_scroll_end
            view.refresh_entry()
            if follow:
                self.call_after_refresh(self.scroll_end, animate=False)

    def drop_entries(self, entries: list[Entry]) -> None:
        """Remove the views of entries the conversation no longer keeps."""
        for entry in entries:
            view = self._views.pop(id(entry), None)
            if view is not None:
                view.remove()

    def clear_entries(self) -> None:
        """Remove every view."""
        self._views.clear()
        self.remove_children()
