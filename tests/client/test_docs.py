"""The client's examples stay true: docs/client.md's and README's Python examples run,
against a real gateway and processor, and print what the documents say."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.conftest import Stack, ws_url

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client.md"
README = ROOT / "README.md"
README_URL = "ws://localhost:8000/ws"  # the address the README's example connects to


def blocks(language: str, doc: Path = DOC) -> list[str]:
    """The fenced code blocks of ``language`` in ``doc`` (docs/client.md), in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", doc.read_text(), re.S | re.M)


async def run_script(
    source: str, tmp_path: Path, url: str | None = None
) -> tuple[int | None, str, str]:
    """Run ``source`` as a script (with ``HOPLINE_URL=url`` if given): exit code, stdout, stderr."""
    script = tmp_path / "example.py"
    script.write_text(source)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **({"HOPLINE_URL": url} if url else {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_the_example_prints_the_documented_output(stack: Stack, tmp_path: Path) -> None:
    """The first Python block, run as a script against a gateway, prints the text block."""
    gw = await stack.gateway()
    await stack.processor()
    code, out, err = await run_script(blocks("python")[0], tmp_path, ws_url(gw))
    assert code == 0, err
    assert out == blocks("text")[0]


async def test_the_example_says_why_it_cannot_connect(tmp_path: Path) -> None:
    """With no gateway, the example's ConnectError branch prints one line and exits 1."""
    from hopline.broker_node import free_port

    url = f"ws://127.0.0.1:{free_port()}/ws"
    code, _, err = await run_script(blocks("python")[0], tmp_path, url)
    assert code == 1
    assert err == f"error: cannot connect to {url}: connection refused\n"


def test_the_sans_io_example_runs() -> None:
    """The ClientCore snippet runs as written (its assert holds)."""
    exec(compile(blocks("python")[1], str(DOC), "exec"), {})


async def test_the_readme_example_prints_what_its_comment_says(
    stack: Stack, tmp_path: Path
) -> None:
    """README's Python example, run as written against a gateway and a processor (only its
    address, ws://localhost:8000/ws, pointed at the test's gateway), prints the reply its
    comment shows."""
    [example] = blocks("python", README)
    assert example.count(README_URL) == 1, "the example's address changed: update README_URL"
    shown = re.findall(r"print\(.*\)\s*# (.*)$", example, re.M)
    assert shown == ["hello world"]
    gw = await stack.gateway()
    await stack.processor()
    code, out, err = await run_script(example.replace(README_URL, ws_url(gw)), tmp_path)
    assert code == 0, err
    assert out.splitlines() == shown
