"""Admission and abuse controls of the gateway (pure: no I/O).

* :func:`parse_origins` / :func:`origin_allowed`: the ``Origin`` allow-list that stops
  cross-site WebSocket hijacking. A request without ``Origin`` (a non-browser
  client: browsers always send it on WebSocket handshakes) is allowed.
* :class:`TokenVerifier` and :func:`find_token`: optional HS256 JWT authentication.
  The token travels in ``Authorization: Bearer <jwt>`` or, for browsers (which
  cannot set headers on a WebSocket handshake), as a ``Sec-WebSocket-Protocol``
  entry ``hopline.token.<jwt>``. The gateway never selects that entry, so the token
  is not echoed back.
* :class:`TokenBucket`: the per-connection request-rate limit; :class:`RateGuard` adds
  the grace after which a socket that keeps exceeding it is closed.
* :func:`check_head`: cheap limits on a handshake request's headers, checked
  before anything parses their values.
* :class:`RedactTokens`: a logging filter that blanks tokens out of log records
  (websockets logs request headers at debug level).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt

from hopline.settings.common import check_secret  # the secret is a setting; checked there

__all__ = [
    "TOKEN_SUBPROTOCOL_PREFIX",
    "InvalidToken",
    "RateGuard",
    "RedactTokens",
    "TokenBucket",
    "TokenVerifier",
    "Verdict",
    "check_head",
    "find_token",
    "mint_token",
    "normalize_origin",
    "origin_allowed",
    "parse_origins",
]

TOKEN_SUBPROTOCOL_PREFIX = "hopline.token."
TOKEN_ALGORITHM = "HS256"


# Origins


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped, no trailing slash.

    ``null`` (sandboxed frames, ``file:`` pages) stays ``null``. A value that is not
    an origin is returned lower-cased, so it never matches a well-formed entry.
    """
    value = origin.strip().lower().rstrip("/")
    if value == "null":
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value
    if not parts.scheme or not parts.hostname:
        return value
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == default:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def parse_origins(values: Iterable[str]) -> frozenset[str]:
    """The allow-list from option values; each value may hold several origins.

    Origins are separated by commas and/or whitespace, so both
    ``--allowed-origin https://a --allowed-origin https://b`` and
    ``HOPLINE_ALLOWED_ORIGIN="https://a,https://b"`` work.
    """
    found: set[str] = set()
    for value in values:
        for item in re.split(r"[\s,]+", value):
            if item:
                found.add(normalize_origin(item))
    return frozenset(found)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """Whether a handshake with this ``Origin`` header may proceed.

    An empty allow-list allows every origin; a missing header (non-browser client)
    is always allowed; otherwise the normalised origin must be listed (``null``
    only when ``null`` itself is listed).
    """
    if not allowed or origin is None:
        return True
    return normalize_origin(origin) in allowed


# Tokens


class InvalidToken(ValueError):
    """A missing or unacceptable token; the message is safe to show (no token in it)."""


def find_token(authorization: str | None, subprotocols: Iterable[str]) -> str | None:
    """The token offered by a request, or None.

    Args:
        authorization: the ``Authorization`` header value, if any; only the
            ``Bearer`` scheme (any case) is read.
        subprotocols: the entries of ``Sec-WebSocket-Protocol``; the first
            ``hopline.token.<jwt>`` entry is used when there is no bearer token.
    """
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    for entry in subprotocols:
        if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return entry[len(TOKEN_SUBPROTOCOL_PREFIX) :] or None
    return None


class TokenVerifier:
    """Checks HS256 JWTs signed with a shared secret.

    A token is accepted only if its signature verifies with ``secret`` under HS256
    (``alg=none`` and every other algorithm are refused), it carries an ``exp``
    claim, and ``exp``/``nbf`` hold (with ``leeway`` seconds of clock skew).
    """

    def __init__(self, secret: str, leeway: float = 0.0) -> None:
        check_secret(secret)
        self._secret = secret
        self._leeway = leeway

    def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims.

        Raises:
            InvalidToken: no token, or it is malformed, tampered, expired, not yet
                valid, lacks ``exp`` or uses another algorithm.
        """
        if not token:
            raise InvalidToken("missing token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[TOKEN_ALGORITHM],
                options={"require": ["exp"]},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token ({type(exc).__name__})") from None
        return claims


def mint_token(secret: str, ttl: float, now: float, **claims: Any) -> str:
    """An HS256 token the gateway accepts, expiring ``ttl`` seconds after ``now`` (unix time).

    For clients and tools (``hopline send --token`` and the like) and for tests.
    """
    check_secret(secret)
    payload = {**claims, "iat": int(now), "exp": int(now + ttl)}
    return jwt.encode(payload, secret, algorithm=TOKEN_ALGORITHM)


_SECRET_PATTERNS = (
    (re.compile(r"(?i)(authorization:\s*)[^\r\n]+"), r"\1***"),
    (re.compile(r"(?i)(bearer\s+)[^\s,;]+"), r"\1***"),
    (
        re.compile(re.escape(TOKEN_SUBPROTOCOL_PREFIX) + r"[^\s,;'\"]+"),
        TOKEN_SUBPROTOCOL_PREFIX + "***",
    ),
)
_TRIGGERS = ("authorization", "bearer", TOKEN_SUBPROTOCOL_PREFIX)


def redact(text: str) -> str:
    """``text`` with Authorization values, bearer tokens and ``hopline.token.*`` as ``***``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _may_hold_token(text: str) -> bool:
    lowered = text.lower()
    return any(trigger in lowered for trigger in _TRIGGERS)


class RedactTokens(logging.Filter):
    """Rewrites records (message and traceback) that could show a token.

    Filters run only for records that pass the level check, so this costs nothing
    unless debug logging is on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        if _may_hold_token(message):
            record.msg = redact(message)
            record.args = ()
        if record.exc_info and not record.exc_text:
            text = _FORMATTER.formatException(record.exc_info)
            if _may_hold_token(text):
                record.exc_text = redact(text)
        return True


_FORMATTER = logging.Formatter()


def install_redaction(logger: logging.Logger) -> None:
    """Attach one :class:`RedactTokens` to ``logger`` (idempotent)."""
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


# Rate limiting


class TokenBucket:
    """A token bucket: ``rate`` requests per second on average, bursts of ``burst``.

    The caller passes the current monotonic time, so the bucket does no I/O and no
    clock reads of its own. It starts full.
    """

    __slots__ = ("_level", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._level = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means the request is over the limit."""
        level = self._level + (now - self._stamp) * self.rate
        if level > self.burst:
            level = self.burst
        self._stamp = now
        if level >= 1.0:
            self._level = level - 1.0
            return True
        self._level = level
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket would be full at ``now`` (its owner may forget it)."""
        return self._level + (now - self._stamp) * self.rate >= self.burst


class Verdict(enum.Enum):
    """What to do with a frame under the rate limit."""

    PASS = "pass"  # serve it
    BUSY = "busy"  # answer 'busy', keep the socket
    CLOSE = "close"  # the grace is over: close the socket with 1008


class RateGuard:
    """A :class:`TokenBucket` plus a grace for sockets that keep exceeding it.

    The first frame over the limit starts an *episode*; the episode ends when the
    client pauses long enough for its bucket to refill completely. A frame is answered
    :attr:`Verdict.CLOSE` once an episode has lasted ``grace`` seconds or has
    refused more than ``max(burst, rate * grace)`` frames: a client flooding at
    full speed is closed after a bounded number of ``busy`` answers, one slightly
    over its rate after ``grace`` seconds. ``grace`` 0 never closes.
    """

    __slots__ = (
        "_bucket",
        "_episode_start",
        "_max_refused",
        "_refused",
        "grace",
    )

    def __init__(self, rate: float, burst: int, grace: float, now: float) -> None:
        self._bucket = TokenBucket(rate, burst, now)
        self.grace = grace
        self._max_refused = max(float(burst), rate * grace)
        self._episode_start: float | None = None
        self._refused = 0

    def check(self, now: float) -> Verdict:
        """Spend one token for a frame received at ``now``; what to do with the frame."""
        bucket = self._bucket
        if self._episode_start is not None and bucket.full(now):
            self._episode_start = None  # the client paused until its bucket refilled
        if bucket.take(now):
            return Verdict.PASS
        if self._episode_start is None:
            self._episode_start = now
            self._refused = 0
        self._refused += 1
        if self.grace > 0 and (
            now - self._episode_start >= self.grace or self._refused > self._max_refused
        ):
            return Verdict.CLOSE
        return Verdict.BUSY


# Handshake head


def check_head(
    headers: Iterable[tuple[str, str]], max_headers: int, max_subprotocols: int
) -> str | None:
    """Why a handshake's headers are refused, or None.

    Counts headers and ``Sec-WebSocket-Protocol`` entries (commas) without parsing
    any value, so it costs microseconds whatever the client sent (its total size
    is capped earlier, while it is received). 0 disables a limit.
    """
    count = 0
    entries = 0
    for name, value in headers:
        count += 1
        if name.lower() == "sec-websocket-protocol":
            entries += value.count(",") + 1
    if max_headers and count > max_headers:
        return f"more than {max_headers} headers"
    if max_subprotocols and entries > max_subprotocols:
        return f"more than {max_subprotocols} subprotocols offered"
    return None


def header_values(headers: Mapping[str, str] | Any, name: str) -> list[str]:
    """All values of a (possibly repeated) header, from websockets ``Headers``."""
    get_all = getattr(headers, "get_all", None)
    if get_all is not None:
        return list(get_all(name))
    value = headers.get(name)
    return [] if value is None else [value]
