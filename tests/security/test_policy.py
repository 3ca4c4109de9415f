"""The pure admission and abuse logic of gateway/security.py, without a network."""

from __future__ import annotations

import logging
import time

import jwt
import pytest

from gateway.security import (
    InvalidToken,
    RedactTokens,
    TokenBucket,
    TokenVerifier,
    find_token,
    mint_token,
    normalize_origin,
    origin_allowed,
    parse_origins,
    redact,
)
from hopline.settings.common import check_secret

SECRET = "unit-test-secret-that-is-long-enough!"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://app.example.com:8080", "http://app.example.com:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("null", "null"),
        ("not an origin", "not an origin"),
    ],
)
def test_origins_are_normalised(raw: str, normal: str) -> None:
    """Case, default ports and trailing slashes do not matter; the rest does."""
    assert normalize_origin(raw) == normal


def test_parse_origins_splits_commas_and_spaces() -> None:
    """Each value may list several origins, separated by commas and/or whitespace."""
    assert parse_origins(["https://a.example, https://b.example", "https://c.example  x:1"]) == {
        "https://a.example",
        "https://b.example",
        "https://c.example",
        "x:1",
    }
    assert parse_origins([]) == frozenset()


def test_origin_allowed() -> None:
    """No list allows all; no header is allowed; otherwise only listed origins."""
    allowed = parse_origins(["https://app.example"])
    assert origin_allowed("https://evil.example", frozenset())
    assert origin_allowed(None, allowed)
    assert origin_allowed("https://APP.example:443", allowed)
    assert not origin_allowed("https://evil.example", allowed)
    assert not origin_allowed("https://app.example.evil.example", allowed)
    assert not origin_allowed("null", allowed)
    assert origin_allowed("null", parse_origins(["null"]))


@pytest.mark.parametrize(
    ("authorization", "subprotocols", "token"),
    [
        ("Bearer abc.def.ghi", [], "abc.def.ghi"),
        ("bearer   abc ", [], "abc"),
        ("Basic dXNlcjpwYXNz", [], None),
        ("Bearer ", [], None),
        (None, ["hopline.v1", "hopline.token.abc.def.ghi"], "abc.def.ghi"),
        (None, ["hopline.token."], None),
        ("Bearer header", ["hopline.token.sub"], "header"),
        (None, ["hopline.v1"], None),
    ],
)
def test_find_token(authorization: str | None, subprotocols: list[str], token: str | None) -> None:
    """The bearer token wins; else the first hopline.token.<jwt> subprotocol entry."""
    assert find_token(authorization, subprotocols) == token


def _token(**claims: object) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, "HS256")


def _forged() -> str:
    """A good token with its last signature characters changed."""
    token = _token()
    return token[:-2] + ("BB" if token.endswith("AA") else "AA")


def test_verifier_accepts_a_good_token_and_returns_its_claims() -> None:
    """A token signed with the secret, with a future exp, is accepted."""
    assert TokenVerifier(SECRET).verify(_token(sub="alice"))["sub"] == "alice"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "garbage",
        _token(exp=int(time.time()) - 5),
        _token(nbf=int(time.time()) + 3600),
        jwt.encode({"sub": "no exp"}, SECRET, "HS256"),
        jwt.encode({"exp": int(time.time()) + 60}, None, algorithm="none"),
        _forged(),
    ],
    ids=["none", "empty", "garbage", "expired", "not-yet", "no-exp", "alg-none", "bad-sig"],
)
def test_verifier_refuses_bad_tokens(token: str | None) -> None:
    """Missing, malformed, expired, premature, exp-less, unsigned and forged tokens fail."""
    with pytest.raises(InvalidToken) as refused:
        TokenVerifier(SECRET).verify(token)
    if token:
        assert token not in str(refused.value)


def test_minted_tokens_verify_and_expire() -> None:
    """mint_token makes tokens the verifier accepts until their ttl runs out."""
    now = time.time()
    good = mint_token(SECRET, ttl=60, now=now, sub="bob")
    assert TokenVerifier(SECRET).verify(good)["sub"] == "bob"
    with pytest.raises(InvalidToken, match="expired"):
        TokenVerifier(SECRET).verify(mint_token(SECRET, ttl=60, now=now - 120))


def test_short_secrets_are_refused() -> None:
    """HS256 needs a key of 32 bytes or more."""
    with pytest.raises(ValueError, match="32 bytes"):
        check_secret("too short")
    with pytest.raises(ValueError):
        TokenVerifier("")
    check_secret("x" * 32)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """A full bucket allows ``burst`` at once, then refills at ``rate`` per second."""
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_token_bucket_rejects_nonsense() -> None:
    """A zero rate or an empty bucket is a programming error."""
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0, 0.0)


def test_redact_hides_authorization_values_and_subprotocol_tokens() -> None:
    """Authorization header values, bearer tokens and hopline.token entries become ***."""
    assert redact("< Authorization: Bearer abc.def.ghi") == "< Authorization: ***"
    assert redact("sent bearer abc.def") == "sent bearer ***"
    assert (
        redact("< Sec-WebSocket-Protocol: hopline.v1, hopline.token.abc.def.ghi")
        == "< Sec-WebSocket-Protocol: hopline.v1, hopline.token.***"
    )
    assert redact("nothing secret") == "nothing secret"


def test_redact_filter_rewrites_messages_and_tracebacks() -> None:
    """The logging filter rewrites formatted messages and exception text."""
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "< %s: %s", None, None)
    record.args = ("Authorization", "Bearer s3cr3t")
    assert RedactTokens().filter(record)
    assert "s3cr3t" not in record.getMessage()
    try:
        raise ValueError("bad header hopline.token.s3cr3t")
    except ValueError:
        import sys

        exc_record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "oops", (), sys.exc_info())
    RedactTokens().filter(exc_record)
    assert "s3cr3t" not in logging.Formatter().format(exc_record)
