"""Short-lived, single-purpose tokens for ``EventSource``, which cannot send headers.

A page opens ``new EventSource("/stream/<message>?token=<jwt>")``. A token in a URL
can end up in places a header does not (proxy and server access logs, the browser's
network panel), so the gateway accepts a token from the URL only when it is:

* a **stream token**: its ``purpose`` claim is ``"stream"`` (``hopline token
  --purpose stream`` or :func:`mint_stream_token`); such a token is refused on
  ``/ws``, so a leaked one cannot open a socket;
* **short-lived**: it expires at most :data:`MAX_URL_TOKEN_LIFETIME` seconds from
  now (whatever its ``exp`` says beyond that, it is refused).

Long-lived tokens keep travelling in headers (``Authorization: Bearer`` for ``fetch``,
the ``hopline.token.<jwt>`` subprotocol entry for WebSockets). The gateway never
logs a URL token: :class:`RedactUrlTokens` blanks ``token=`` query values out of log
records (websockets logs request lines at debug level).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.security import InvalidToken, mint_token

__all__ = [
    "MAX_URL_TOKEN_LIFETIME",
    "STREAM_PURPOSE",
    "RedactUrlTokens",
    "check_purpose",
    "install_url_redaction",
    "mint_stream_token",
    "redact_url_tokens",
    "url_token",
]

STREAM_PURPOSE = "stream"
MAX_URL_TOKEN_LIFETIME = 300.0  # seconds


def url_token(target: str) -> str | None:
    """The ``token`` query parameter of a request target (``/stream/x?token=...``), or None."""
    query = urlsplit(target).query
    if "token=" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "token":
            return value or None
    return None


def check_purpose(claims: dict[str, Any], *, route: str, in_url: bool, now: float) -> None:
    """Refuse a verified token used where its purpose or lifetime does not allow.

    Args:
        claims: the claims of a token whose signature and ``exp`` already verified.
        route: ``"/ws"`` or ``"/stream"``.
        in_url: whether the token came from the URL's query string.
        now: current unix time.

    Raises:
        InvalidToken: a URL token that is not a stream token or lives too long, or a
            stream token presented to ``/ws``.
    """
    purpose = claims.get("purpose")
    if in_url:
        if purpose != STREAM_PURPOSE:
            raise InvalidToken("a token in the URL must be a stream token (purpose 'stream')")
        if float(claims["exp"]) - now > MAX_URL_TOKEN_LIFETIME:
            raise InvalidToken(f"a stream token must expire within {MAX_URL_TOKEN_LIFETIME:g} s")
    if purpose == STREAM_PURPOSE and route != "/stream":
        raise InvalidToken("a stream token is only valid on /stream")


def mint_stream_token(secret: str, ttl: float, now: float, **claims: Any) -> str:
    """A stream token (``purpose: "stream"``) expiring ``ttl`` seconds after ``now``.

    Raises:
        ValueError: ``ttl`` above :data:`MAX_URL_TOKEN_LIFETIME`, or a short secret.
    """
    if ttl > MAX_URL_TOKEN_LIFETIME:
        raise ValueError(f"a stream token lives at most {MAX_URL_TOKEN_LIFETIME:g} s")
    return mint_token(secret, ttl, now, **claims, purpose=STREAM_PURPOSE)


_URL_TOKEN = re.compile(r"([?&;]token=)[^&\s\"';]+")


def redact_url_tokens(text: str) -> str:
    """``text`` with every ``token=`` query value replaced by ``***``."""
    return _URL_TOKEN.sub(r"\1***", text)


class RedactUrlTokens(logging.Filter):
    """Rewrites log records that could show a URL token (costs nothing below their level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        if "token=" in message:
            record.msg = redact_url_tokens(message)
            record.args = ()
        return True


def install_url_redaction(logger: logging.Logger) -> None:
    """Attach one :class:`RedactUrlTokens` to ``logger`` (idempotent)."""
    if not any(isinstance(f, RedactUrlTokens) for f in logger.filters):
        logger.addFilter(RedactUrlTokens())
