"""Admission before the upgrade: the Origin allow-list and optional JWT authentication."""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings

import jwt
import pytest
from click.testing import CliRunner
from jwt.warnings import InsecureKeyLengthWarning
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.settings import build, click_options
from tests.conftest import Stack, http_url, ws_url
from tests.helpers import eventually, http_get
from tests.security.checks import assert_serves
from tests.security.raw import http_status

SECRET = "test-secret-that-is-long-enough-for-hs256"
OTHER = "another-secret-that-is-long-enough-for-hs256"
APP = "https://app.example.com"


def make_token(secret: str = SECRET, ttl: float = 60, **claims: object) -> str:
    """An HS256 token expiring ``ttl`` seconds from now."""
    return jwt.encode({"sub": "tester", "exp": int(time.time() + ttl), **claims}, secret, "HS256")


def tampered(token: str) -> str:
    """``token`` with its payload rewritten and the old signature kept."""
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "admin", "exp": 2**31}).encode())
    return f"{header}.{payload.decode().rstrip('=')}.{signature}"


def unsigned(**claims: object) -> str:
    """An ``alg=none`` token (no signature)."""
    return jwt.encode({"exp": int(time.time() + 60), **claims}, None, algorithm="none")


async def handshake_status(gw: Gateway, **kwargs: object) -> int:
    """The HTTP status the /ws handshake got (101 when it opened)."""
    try:
        async with connect(ws_url(gw), **kwargs):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# Origin


async def test_listed_origin_is_allowed_and_others_get_403(stack: Stack) -> None:
    """With an allow-list, only listed origins (normalised) open /ws; others get 403."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    await stack.processor()
    assert await handshake_status(gw, origin=APP) == 101
    assert await handshake_status(gw, origin="HTTPS://App.Example.com:443") == 101
    assert await handshake_status(gw, origin="https://evil.example.com") == 403
    assert await handshake_status(gw, origin="http://app.example.com") == 403  # scheme counts
    assert await handshake_status(gw, origin="https://app.example.com:8443") == 403
    assert await handshake_status(gw, origin="null") == 403
    await eventually(lambda: gw.connections == 0, message="every slot released")
    await assert_serves(gw)  # no Origin header: a non-browser client


async def test_origin_check_also_guards_stream(stack: Stack) -> None:
    """A cross-site page cannot trigger requests through /stream either."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    status, _, _ = await http_status(
        gw.port,
        b"GET /stream/hi HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example.com\r\n\r\n",
    )
    assert status == 403
    assert gw.metrics.total("hopline_requests_total") == 0


async def test_two_origin_headers_are_refused(stack: Stack) -> None:
    """A request carrying two Origin headers is refused rather than guessed at."""
    gw = await stack.gateway(allowed_origins=frozenset({APP}))
    request = (
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {APP}\r\nOrigin: https://evil.example.com\r\n\r\n"
    )
    status, _, _ = await http_status(gw.port, request.encode())
    assert status == 403


async def test_no_allow_list_allows_any_origin(stack: Stack) -> None:
    """Without --allowed-origin every origin is accepted (the default)."""
    gw = await stack.gateway()
    assert await handshake_status(gw, origin="https://anywhere.example") == 101


def test_allowed_origins_option_and_env_var() -> None:
    """--allowed-origin repeats; HOPLINE_ALLOWED_ORIGIN takes comma- or space-separated lists."""
    import click

    seen: list[GatewaySettings] = []

    @click.command()
    @click_options(GatewaySettings)
    def probe(**kw: object) -> None:
        seen.append(build(GatewaySettings, kw))

    runner = CliRunner()
    result = runner.invoke(
        probe, ["--allowed-origin", "https://a.example", "--allowed-origin", "https://B.example/"]
    )
    assert result.exit_code == 0, result.output
    assert seen[-1].allowed_origins == {"https://a.example", "https://b.example"}
    env = {"HOPLINE_ALLOWED_ORIGIN": "https://a.example,https://b.example https://c.example:8443"}
    result = runner.invoke(probe, [], env=env)
    assert result.exit_code == 0, result.output
    assert seen[-1].allowed_origins == {
        "https://a.example",
        "https://b.example",
        "https://c.example:8443",
    }
    result = runner.invoke(probe, ["--help"])
    for var in (
        "HOPLINE_ALLOWED_ORIGIN",
        "HOPLINE_TOKEN_SECRET",
        "HOPLINE_MAX_CONNECTIONS",
        "HOPLINE_HANDSHAKE_TIMEOUT",
        "HOPLINE_RATE_LIMIT",
        "HOPLINE_RATE_BURST",
        "HOPLINE_WRITE_TIMEOUT",
    ):
        assert var in result.output


def test_token_secret_env_var_and_defaults() -> None:
    """HOPLINE_TOKEN_SECRET turns authentication on; by default it is off and limits are set."""
    import click

    seen: list[GatewaySettings] = []

    @click.command()
    @click_options(GatewaySettings)
    def probe(**kw: object) -> None:
        seen.append(build(GatewaySettings, kw))

    runner = CliRunner()
    assert runner.invoke(probe, []).exit_code == 0
    default = seen[-1]
    assert default.token_secret is None
    assert default.allowed_origins == frozenset()
    assert default.rate_limit == 0
    assert default.max_connections == 10_000
    assert SECRET not in repr(GatewaySettings(token_secret=SECRET))
    assert runner.invoke(probe, [], env={"HOPLINE_TOKEN_SECRET": SECRET}).exit_code == 0
    assert seen[-1].token_secret == SECRET
    short = runner.invoke(probe, ["--token-secret", "short"])
    assert short.exit_code == 2
    assert "at least 32 bytes" in short.output


# Authentication


async def test_valid_bearer_token_opens_the_socket(stack: Stack) -> None:
    """With --token-secret, a valid token in Authorization: Bearer is accepted."""
    gw = await stack.gateway(token_secret=SECRET)
    await stack.processor()
    headers = {"Authorization": f"Bearer {make_token()}"}
    async with connect(ws_url(gw), additional_headers=headers) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello world"


@pytest.mark.parametrize(
    ("offered", "selected", "reply"),
    [
        (["hopline.v1"], "hopline.v1", '{"id":1,"data":"hi world"}'),
        (["hopline.plain"], "hopline.plain", "hi world"),
    ],
)
async def test_browser_token_in_subprotocol_is_accepted_and_not_echoed(
    stack: Stack, offered: list[str], selected: str, reply: str
) -> None:
    """A browser's hopline.token.<jwt> entry authenticates; the server selects another entry."""
    gw = await stack.gateway(token_secret=SECRET)
    await stack.processor()
    token = make_token()
    async with connect(ws_url(gw), subprotocols=[*offered, f"hopline.token.{token}"]) as ws:
        assert ws.subprotocol == selected
        assert token not in str(ws.response.headers)
        await ws.send('{"id":1,"data":"hi"}' if selected == "hopline.v1" else "hi")
        assert await ws.recv() == reply


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "expired",
        "tampered",
        "wrong-secret",
        "alg-none",
        "hs512",
        "no-exp",
        "not-a-jwt",
        "basic-scheme",
        "bad-subprotocol-token",
    ],
)
async def test_bad_tokens_get_401_before_the_upgrade_and_nothing_is_published(
    stack: Stack, how: str
) -> None:
    """Missing, expired, tampered, unsigned and otherwise bad tokens get 401; nothing is queued."""
    gw = await stack.gateway(token_secret=SECRET)  # no processor: anything published would wait
    headers: dict[str, str] = {}
    subprotocols: list[str] = []
    match how:
        case "expired":
            headers["Authorization"] = f"Bearer {make_token(ttl=-10)}"
        case "tampered":
            headers["Authorization"] = f"Bearer {tampered(make_token())}"
        case "wrong-secret":
            headers["Authorization"] = f"Bearer {make_token(secret=OTHER)}"
        case "alg-none":
            headers["Authorization"] = f"Bearer {unsigned(sub='admin')}"
        case "hs512":
            with warnings.catch_warnings():  # same secret, another algorithm: pyjwt warns
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                token = jwt.encode({"exp": int(time.time() + 60)}, SECRET, algorithm="HS512")
            headers["Authorization"] = f"Bearer {token}"
        case "no-exp":
            headers["Authorization"] = f"Bearer {jwt.encode({'sub': 'x'}, SECRET, 'HS256')}"
        case "not-a-jwt":
            headers["Authorization"] = "Bearer hello"
        case "basic-scheme":
            headers["Authorization"] = "Basic dXNlcjpwYXNz"
        case "bad-subprotocol-token":
            subprotocols = ["hopline.v1", f"hopline.token.{make_token(ttl=-10)}"]
    try:
        async with connect(
            ws_url(gw), additional_headers=headers, subprotocols=subprotocols or None
        ) as ws:
            await ws.send("should never be published")
            raise AssertionError("the handshake succeeded")
    except InvalidStatus as exc:
        assert exc.response.status_code == 401
        assert exc.response.headers["WWW-Authenticate"].startswith("Bearer")
    stream = await http_get(http_url(gw, "/stream/nor-this"))
    assert stream.status == 401
    await gw.broker.sample_queues()
    topo = gw.settings.topology
    assert gw.broker.queues[topo.input_queue].ready == 0
    assert gw.broker.queues[topo.batch_queue].ready == 0
    assert gw.metrics.total("hopline_requests_total") == 0
    assert gw.broker.pending_requests == 0
    assert gw.active_websockets == 0


async def test_stream_requires_the_token_and_health_metrics_stay_open(stack: Stack) -> None:
    """/stream needs a bearer token like /ws; /health, /metrics and /stats answer without one."""
    gw = await stack.gateway(token_secret=SECRET)
    await stack.processor()
    request = f"GET /stream/hi HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n\r\n"
    status, _, body = await http_status(gw.port, request.encode())
    assert status == 200
    assert b"\ndata: hi world\n\n" in body
    assert (await http_get(http_url(gw, "/stream/hi"))).status == 401
    for path in ("/health", "/metrics", "/stats"):
        assert (await http_get(http_url(gw, path))).status == 200, path


async def test_tokens_never_appear_in_logs(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Even at debug level (websockets logs request headers), the gateway's logs hide tokens."""
    for name in ("websockets.server", "gateway", "hopline"):
        caplog.set_level(logging.DEBUG, logger=name)
    gw = await stack.gateway(token_secret=SECRET)
    await stack.processor()
    good, expired = make_token(), make_token(ttl=-10)
    async with connect(ws_url(gw), additional_headers={"Authorization": f"Bearer {good}"}) as ws:
        await ws.send("hi")
        await ws.recv()
    async with connect(ws_url(gw), subprotocols=["hopline.v1", f"hopline.token.{good}"]):
        pass
    for bad in (f"Bearer {expired}", f"Bearer {tampered(good)}"):
        assert await handshake_status(gw, additional_headers={"Authorization": bad}) == 401
    server_records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any("Authorization" in r.getMessage() for r in server_records)  # debug was on
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in server_records)
    for secret in (good, expired, tampered(good), good.split(".")[2], SECRET):
        assert secret not in logged
