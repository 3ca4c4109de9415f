"""TUI settings: one frozen dataclass, filled by the CLI from options and environment."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from hopline.client.handshake import auth_headers, validate_url

__all__ = ["DEFAULT_URL", "TuiSettings", "stats_url"]

DEFAULT_URL = "ws://localhost:8000/ws"


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

    url: str = DEFAULT_URL
    token: str | None = None
    burst: int = 100
    burst_message: str = "hello"
    stats_interval: float = 0.5
    latency_window: float = 30.0
    connect_timeout: float = 5.0
    max_backoff: float = 10.0
    max_retries: int | None = None

    @property
    def stats_url(self) -> str:
        """``/stats`` on the gateway's host and port."""
        return stats_url(self.url)

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers carrying the token, if any."""
        return auth_headers(self.token)
