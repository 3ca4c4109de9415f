"""URL checks, auth headers and the one wording of connection failures (pure)."""

from __future__ import annotations

import errno
import socket

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.http11 import Response

from hopline.client.errors import InvalidURL
from hopline.client.handshake import auth_headers, classify, validate_url


@pytest.mark.parametrize(
    "url",
    ["ws://localhost:8000/ws", "wss://gw.example/ws", "ws://127.0.0.1:1/x?y=1", "ws://[::1]/"],
)
def test_ws_urls_are_accepted(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("localhost:8000", "ws://localhost:8000/ws"),
        ("localhost:8000/ws", "ws://localhost:8000/ws"),
        ("http://localhost:8000/ws", "ws://localhost:8000/ws"),
        ("https://gw.example", "wss://gw.example/ws"),
        ("127.0.0.1:9000/other", "ws://127.0.0.1:9000/other"),
    ],
)
def test_near_misses_get_a_hint(url: str, hint: str) -> None:
    """A URL without its scheme, or with http(s), gets 'did you mean ...?'."""
    with pytest.raises(InvalidURL) as info:
        validate_url(url)
    assert str(info.value) == f"not a ws:// or wss:// URL: {url!r} (did you mean {hint}?)"


@pytest.mark.parametrize("url", ["", "ftp://x/ws", "ws://", "ws://host:99999/ws", "ws://:80/ws"])
def test_hopeless_urls_get_no_hint(url: str) -> None:
    with pytest.raises(InvalidURL) as info:
        validate_url(url)
    assert str(info.value) == f"not a ws:// or wss:// URL: {url!r}"


def test_a_token_travels_as_a_bearer_header() -> None:
    assert auth_headers("abc.def") == {"Authorization": "Bearer abc.def"}
    assert auth_headers(None) == {} and auth_headers("") == {}


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    ("exc", "reason", "retryable"),
    [
        (_status(401), "HTTP 401 (check --token)", False),
        (_status(403), "HTTP 403 (check --token)", False),
        (_status(404), "HTTP 404", False),
        (_status(400), "HTTP 400", False),
        (_status(503), "HTTP 503", True),
        (_status(500), "HTTP 500", True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection refused", True),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 8000, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 8000)"
            ),
            "connection refused",
            True,
        ),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "connection reset", True),
        (TimeoutError(), "timeout", True),
        (
            socket.gaierror(-2, "Name or service not known"),
            "name resolution: Name or service not known",
            True,
        ),
        (OSError(errno.EMFILE, "Too many open files"), "too many open files", True),
        (
            InvalidMessage("did not receive a valid HTTP response"),
            "bad handshake: did not receive a valid HTTP response",
            True,
        ),
    ],
)
def test_failures_are_classified_with_one_wording(
    exc: BaseException, reason: str, retryable: bool
) -> None:
    """Fatal: 400/401/403/404. Retryable: refused, reset, timeouts, 503 and the rest."""
    failure = classify(exc)
    assert (failure.reason, failure.retryable) == (reason, retryable)
    assert str(failure) == reason


def test_a_timeout_names_its_limit() -> None:
    assert classify(TimeoutError(), timeout=5.0).reason == "no answer within 5 s"
