"""``hopline tui``: parse options, build :class:`~tui.config.TuiSettings`, run the app."""

from __future__ import annotations

import click

from hopline.options import option, token_option
from tui.config import DEFAULT_URL, TuiSettings, stats_url

__all__ = ["tui"]

_DEFAULTS = TuiSettings()


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        stats_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command()
@option(
    "--url",
    env="HOPLINE_URL",
    default=DEFAULT_URL,
    callback=_check_url,
    help="Gateway WebSocket URL; /stats is read from the same host and port.",
)
@token_option
@option(
    "--burst",
    env="HOPLINE_TUI_BURST",
    default=_DEFAULTS.burst,
    type=click.IntRange(1, 100_000),
    help="Requests sent at once by the burst key (ctrl+b).",
)
@option(
    "--burst-message",
    env="HOPLINE_TUI_BURST_MESSAGE",
    default=_DEFAULTS.burst_message,
    help="Text of each burst request.",
)
@option(
    "--stats-interval",
    env="HOPLINE_TUI_STATS_INTERVAL",
    default=_DEFAULTS.stats_interval,
    type=click.FloatRange(min=0.1),
    help="Seconds between two polls of the gateway's /stats.",
)
@option(
    "--latency-window",
    env="HOPLINE_TUI_LATENCY_WINDOW",
    default=_DEFAULTS.latency_window,
    type=click.FloatRange(min=1),
    help="Seconds of replies the latency percentiles cover.",
)
@option(
    "--connect-timeout",
    env="HOPLINE_TUI_CONNECT_TIMEOUT",
    default=_DEFAULTS.connect_timeout,
    type=click.FloatRange(min=0.1),
    help="Seconds one connection attempt or stats poll may take.",
)
@option(
    "--max-backoff",
    env="HOPLINE_TUI_MAX_BACKOFF",
    default=_DEFAULTS.max_backoff,
    type=click.FloatRange(min=0.1),
    help="Longest wait between reconnection attempts (exponential from 0.5 s).",
)
@option(
    "--max-retries",
    env="HOPLINE_TUI_MAX_RETRIES",
    default=None,
    type=click.IntRange(min=0),
    help="Failed reconnection attempts before giving up  [default: retry forever].",
)
def tui(
    url: str,
    token: str | None,
    burst: int,
    burst_message: str,
    stats_interval: float,
    latency_window: float,
    connect_timeout: float,
    max_backoff: float,
    max_retries: int | None,
) -> None:
    """Chat with the processors and watch queue depths and latency live.

    Enter sends a line, ctrl+b sends a burst, f1 shows help, ctrl+c quits.
    """
    from tui.app import HoplineApp

    settings = TuiSettings(
        url=url,
        token=token or None,
        burst=burst,
        burst_message=burst_message,
        stats_interval=stats_interval,
        latency_window=latency_window,
        connect_timeout=connect_timeout,
        max_backoff=max_backoff,
        max_retries=max_retries,
    )
    HoplineApp(settings).run()
