"""The help screen: keys, panels, and where the numbers come from."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP_TEXT", "HelpScreen"]

HELP_TEXT = """\
[b]Keys[/b]
  [b]enter[/b]     send the input line (one hopline.v1 request)
  [b]ctrl+b[/b]    burst: send N requests at once (--burst)
  [b]ctrl+r[/b]    reconnect now (skips the backoff wait)
  [b]ctrl+l[/b]    clear the chat log
  [b]escape[/b]    leave / re-enter the input line
  [b]f1[/b] [b]?[/b]      this help (? outside the input)
  [b]ctrl+c[/b] [b]q[/b]  quit (q outside the input)

[b]Chat[/b]  each reply or error lands under its request with its
  round-trip time; errors show their code ([b]timeout[/b], [b]busy[/b], ...).
[b]queues[/b]  ready / unacked / consumers per input queue and the
  gateway's replies/s over the last 5 s, from GET /stats.
  [i]AMQP passive declare[/i]: instant, no unacked count;
  [i]management API[/i]: adds unacked, refreshed every few seconds.
  The age is the sample's age.
[b]round trip[/b]  this client's latency: last, p50/p95/p99 over the
  window, replies/s over 5 s; the sparkline is each second's p95.
"""


class HelpScreen(ModalScreen[None]):
    """Modal help; any of escape, q, f1 or ? closes it."""

    BINDINGS = [
        Binding("escape,q,f1,question_mark", "dismiss", "Close help"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "hopline tui · help"
            box.border_subtitle = "escape closes"
            yield Static(Content.from_markup(HELP_TEXT), id="help-text")
