"""Test helpers: HTTP GET without extra dependencies, waiting for a condition with a deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HttpResponse", "eventually", "http_get"]


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_get(url: str, timeout: float = 10.0) -> HttpResponse:
    """GET ``url`` (http://host:port/path) with HTTP/1.1 and ``Connection: close``."""
    assert url.startswith("http://")
    hostport, _, path = url[len("http://") :].partition("/")
    host, _, port = hostport.partition(":")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, int(port or 80))
        writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await reader.read()
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpResponse(status, headers, body)


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{message} not met within {timeout} s")
        await asyncio.sleep(interval)
