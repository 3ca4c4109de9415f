"""``hopline tui``: parse options into :class:`~tui.config.TuiSettings`, run the app."""

from __future__ import annotations

from typing import Any

import click

from hopline import runtime
from hopline.settings import build, click_options
from tui.config import TuiSettings

__all__ = ["tui"]


@click.command()
@click_options(TuiSettings)
def tui(**kw: Any) -> None:
    """Chat with the processors and watch queue depths and latency live.

    Enter sends a line, ctrl+b sends a burst, f1 shows help, ctrl+c quits (exit
    code 130, as Ctrl-C everywhere; q after Escape: 0).
    """
    from tui.app import HoplineApp

    app = HoplineApp(build(TuiSettings, kw))
    app.run()
    runtime.exit_with(app.return_code or runtime.OK)
