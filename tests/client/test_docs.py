"""docs/client.md stays true: its examples run, against a real gateway, and print what it says."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.conftest import Stack, ws_url

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of ``language`` in docs/client.md, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), re.S | re.M)


async def test_the_example_prints_the_documented_output(stack: Stack, tmp_path: Path) -> None:
    """The first Python block, run as a script against a gateway, prints the text block."""
    gw = await stack.gateway()
    await stack.processor()
    script = tmp_path / "example.py"
    script.write_text(blocks("python")[0])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOPLINE_URL": ws_url(gw)},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode() == blocks("text")[0]


async def test_the_example_says_why_it_cannot_connect(tmp_path: Path) -> None:
    """With no gateway, the example's ConnectError branch prints one line and exits 1."""
    from hopline.broker_node import free_port

    script = tmp_path / "example.py"
    script.write_text(blocks("python")[0])
    url = f"ws://127.0.0.1:{free_port()}/ws"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOPLINE_URL": url},
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode() == f"error: cannot connect to {url}: connection refused\n"


def test_the_sans_io_example_runs() -> None:
    """The ClientCore snippet runs as written (its assert holds)."""
    exec(compile(blocks("python")[1], str(DOC), "exec"), {})
