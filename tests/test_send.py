"""``hopline send`` as a user runs it: every outcome in order, failures named, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hopline.broker_node import free_port
from tests.conftest import Stack, ws_url
from tests.helpers import eventually
from tests.sample_handlers import Gate
from tests.test_cli import run_hopline


async def test_every_reply_and_error_prints_in_order(stack: Stack) -> None:
    """`send one boom three`: both replies on stdout, the failure named on stderr, exit 1."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    code, out, err = await run_hopline("send", "--url", ws_url(gw), "one", "boom", "three")
    assert (code, out) == (1, "one\nthree\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('hopline: error: message 2 ("boom"): processor_error: ')


async def test_a_timeout_names_the_message(stack: Stack) -> None:
    """No processor and a short --timeout: each message fails on its own line."""
    gw = await stack.gateway()
    code, out, err = await run_hopline("send", "--url", ws_url(gw), "--timeout", "0.3", "a", "b")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        'hopline: error: message 1 ("a"): timeout: no reply within 0.3 s',
        'hopline: error: message 2 ("b"): timeout: no reply within 0.3 s',
    ]


async def test_a_url_without_scheme_is_a_usage_error_with_a_hint() -> None:
    """`--url localhost:8000` is exit 2 and suggests the URL the user meant."""
    code, _, err = await run_hopline("send", "--url", "localhost:8000", "hi")
    assert code == 2
    assert "did you mean ws://localhost:8000/ws?" in err
    assert "Traceback" not in err


async def test_refused_connection_exits_3_with_the_reason() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    code, _, err = await run_hopline("send", "--url", url, "hi")
    assert (code, err) == (3, f"hopline: error: cannot connect to {url}: connection refused\n")


async def test_ctrl_c_exits_130(stack: Stack) -> None:
    """Ctrl-C while waiting for a reply: exit 130 and the one line every command says."""
    gw = await stack.gateway()
    gate = Gate()
    await stack.processor(gate)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hopline",
        "send",
        "--url",
        ws_url(gw),
        "wait",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        await eventually(lambda: gate.seen == 1, timeout=30, message="request reached the handler")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        gate.released.set()
    assert proc.returncode == 130
    assert err.decode() == "hopline: interrupted\n"


async def test_a_streamed_reply_prints_chunk_by_chunk(stack: Stack) -> None:
    """Chunks print as they arrive (before the handler produced the last), then a newline."""
    from tests.sample_handlers import GatedWords

    handler = GatedWords()
    gw = await stack.gateway()
    await stack.processor(handler)
    await stack.batching_ready(gw)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hopline", "send", "--url", ws_url(gw), "a", "b",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    async with asyncio.timeout(30):
        while b"a48," not in seen:
            seen += await proc.stdout.read(4096)
    assert not handler.gate.is_set()
    handler.gate.set()
    async with asyncio.timeout(30):
        rest, err = await proc.communicate()
    out = (seen + rest).decode()
    assert proc.returncode == 0, err
    assert (
        out
        == "".join(f"a{i}," for i in range(100))
        + "\n"
        + "".join(f"b{i}," for i in range(100))
        + "\n"
    )
