"""TUI settings: one frozen dataclass; each field with a setting is also an option."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import click

from hopline.client.handshake import auth_headers, validate_url
from hopline.settings import setting
from hopline.settings.common import TOKEN, URL

__all__ = ["TuiSettings", "stats_url"]


def stats_url(ws_url: str) -> str:
    """The gateway's ``/stats`` URL on the host and port of ``ws_url``.

    ``ws://h:p/ws`` becomes ``http://h:p/stats`` and ``wss://`` becomes ``https://``.

    Raises:
        ValueError: ``ws_url`` is not a ws:// or wss:// URL with a host (the message
            holds a hint when one helps: :func:`hopline.client.handshake.validate_url`).
    """
    parts = urlsplit(validate_url(ws_url))
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/stats", "", ""))


@dataclass(frozen=True, slots=True)
class TuiSettings:
    """Everything the TUI needs.

    Attributes:
        url: gateway WebSocket URL (the ``hopline.v1`` subprotocol is requested).
        token: bearer token sent as ``Authorization: Bearer <token>`` on the
            handshake and on ``/stats``; None sends no header.
        burst: requests sent at once by the burst action.
        burst_message: the text each burst request carries.
        stats_interval: seconds between two ``/stats`` polls.
        latency_window: seconds of replies the latency percentiles cover.
        connect_timeout: seconds one connection attempt (or one poll) may take.
        max_backoff: longest wait between two reconnection attempts.
        max_retries: reconnection attempts in a row before giving up (state
            ``failed``); None retries forever.
    """

    url: str = URL.field()
    token: str | None = TOKEN.field(repr=False)
    burst: int = setting(
        100, "Requests sent at once by the burst key (ctrl+b).", type=click.IntRange(1, 100_000)
    )
    burst_message: str = setting("hello", "Text of each burst request.")
    stats_interval: float = setting(
        0.5,
        "Seconds between two polls of the gateway's /stats.",
        type=click.FloatRange(min=0.1),
    )
    latency_window: float = setting(
        30.0, "Seconds of replies the latency percentiles cover.", type=click.FloatRange(min=1)
    )
    connect_timeout: float = setting(
        5.0,
        "Seconds one connection attempt or stats poll may take.",
        type=click.FloatRange(min=0.1),
        command="tui",
    )
    max_backoff: float = setting(
        10.0,
        "Longest wait between reconnection attempts (exponential from 0.5 s).",
        type=click.FloatRange(min=0.1),
    )
    max_retries: int | None = setting(
        None,
        "Failed reconnection attempts before giving up.",
        type=click.IntRange(min=0),
        show_default="retry forever",
    )

    @property
    def stats_url(self) -> str:
        """``/stats`` on the gateway's host and port."""
        return stats_url(self.url)

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers carrying the token, if any."""
        return auth_headers(self.token)
