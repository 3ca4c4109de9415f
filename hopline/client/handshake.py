"""Opening a connection, without doing it: URL checks, auth headers, failure wording (pure).

One wording for every client (``hopline send``, the TUI, the load tester, the library):
a failure is classified once, by :func:`classify`, into a one-line ``reason`` and
whether retrying may help.

* fatal (retrying cannot fix it): HTTP 400, 401, 403, 404; an invalid URL; a server
  that does not speak ``hopline.v1``;
* retryable: connection refused or reset, a timeout, HTTP 503 and any other status,
  name resolution, a broken handshake.
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from hopline.client.errors import InvalidURL
from hopline.wire.envelope import SUBPROTOCOL

__all__ = [
    "FATAL_STATUSES",
    "SUBPROTOCOL_REFUSED",
    "ConnectFailure",
    "auth_headers",
    "classify",
    "classify_status",
    "validate_url",
]

FATAL_STATUSES = frozenset({400, 401, 403, 404})
_HINTS = {401: "check --token", 403: "check --token"}


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """Why a connection attempt failed: one line, and whether retrying may help."""

    reason: str
    retryable: bool

    def __str__(self) -> str:
        return self.reason


SUBPROTOCOL_REFUSED = ConnectFailure(f"server did not accept subprotocol {SUBPROTOCOL}", False)


def validate_url(url: str) -> str:
    """Return ``url`` if it is a ``ws://`` or ``wss://`` URL with a host (and a valid port).

    Raises:
        InvalidURL: with a hint when the intent is clear, e.g. ``localhost:8000`` →
            ``did you mean ws://localhost:8000/ws?``.
    """
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is not None and parts.scheme in ("ws", "wss") and parts.hostname and port_ok:
        return url
    hint = _hint(url)
    suffix = f" (did you mean {hint}?)" if hint else ""
    raise InvalidURL(f"not a ws:// or wss:// URL: {url!r}{suffix}")


def _hint(url: str) -> str | None:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "ws", url
    elif scheme in ("http", "https"):
        scheme = "wss" if scheme == "https" else "ws"
    elif scheme not in ("ws", "wss"):
        return None
    host = rest.split("/", 1)[0]
    if not host or not urlsplit(f"{scheme}://{host}").hostname:
        return None
    try:
        urlsplit(f"{scheme}://{host}").port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return None
    path = rest[len(host) :] or "/ws"
    return f"{scheme}://{host}{path}"


def auth_headers(token: str | None) -> dict[str, str]:
    """The handshake headers that carry ``token`` (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def classify_status(status: int) -> ConnectFailure:
    """The failure of a handshake answered with HTTP ``status`` instead of 101."""
    hint = _HINTS.get(status)
    reason = f"HTTP {status} ({hint})" if hint else f"HTTP {status}"
    return ConnectFailure(reason, status not in FATAL_STATUSES)


def classify(exc: BaseException, timeout: float | None = None) -> ConnectFailure:
    """Why a connection attempt failed with ``exc``, in the one wording every client uses.

    ``timeout`` is the attempt's time limit, named when ``exc`` is a ``TimeoutError``.
    """
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    if isinstance(exc, InvalidStatus):
        return classify_status(exc.response.status_code)
    if isinstance(exc, InvalidURI | InvalidURL):
        return ConnectFailure(str(exc), False)
    if isinstance(exc, TimeoutError):
        reason = f"no answer within {timeout:g} s" if timeout is not None else "timeout"
        return ConnectFailure(reason, True)
    if isinstance(exc, ConnectionRefusedError) or _all_refused(exc):
        return ConnectFailure("connection refused", True)
    if isinstance(exc, ConnectionResetError):
        return ConnectFailure("connection reset", True)
    if isinstance(exc, socket.gaierror):
        return ConnectFailure(f"name resolution: {exc.strerror or exc}", True)
    if isinstance(exc, OSError):
        if exc.errno == errno.EMFILE:
            return ConnectFailure("too many open files", True)
        return ConnectFailure(exc.strerror or str(exc) or exc.__class__.__name__, True)
    if isinstance(exc, InvalidHandshake):
        return ConnectFailure(f"bad handshake: {exc}", True)
    return ConnectFailure(str(exc) or exc.__class__.__name__, True)


def _all_refused(exc: BaseException) -> bool:
    """asyncio's ``OSError('Multiple exceptions: ...')`` when every address refused."""
    if not isinstance(exc, OSError) or exc.errno is not None:
        return False
    codes = re.findall(r"\[Errno (\d+)\]", str(exc))
    return bool(codes) and all(int(code) == errno.ECONNREFUSED for code in codes)
