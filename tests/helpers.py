"""Test helpers: HTTP GET without extra dependencies, waiting for a condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HttpResponse",
    "SseEvent",
    "children_of",
    "eventually",
    "http_get",
    "http_request",
    "node_processes",
    "parse_sse",
    "requests_total",
]


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_get(url: str, timeout: float = 10.0) -> HttpResponse:
    """GET ``url`` (http://host:port/path) with HTTP/1.1 and ``Connection: close``."""
    return await http_request(url, timeout=timeout)


async def http_request(
    url: str,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> HttpResponse:
    """``method`` ``url`` with extra ``headers``, HTTP/1.1 and ``Connection: close``.

    The body is everything the server sends until it closes the connection.
    """
    assert url.startswith("http://")
    hostport, _, path = url[len("http://") :].partition("/")
    host, _, port = hostport.partition(":")
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, int(port or 80))
        writer.write(
            f"{method} /{path} HTTP/1.1\r\nHost: {hostport}\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
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


async def requests_total(base: str) -> float:
    """``hopline_requests_total`` on ``base``/metrics: every request the gateway published."""
    text = (await http_get(f"{base}/metrics")).body.decode()
    for line in text.splitlines():
        if line.startswith("hopline_requests_total "):
            return float(line.split()[1])
    raise AssertionError("no hopline_requests_total on /metrics")


@dataclass
class SseEvent:
    """One dispatched Server-Sent Event (``event`` is ``message`` unless named)."""

    event: str
    id: str | None
    data: str


def parse_sse(body: bytes) -> tuple[int | None, list[SseEvent]]:
    """The ``retry:`` value and the events of an event-stream body, as a browser reads them.

    Follows the HTML parsing rules that matter here: fields per line, one leading space
    stripped, ``data`` lines joined with ``\\n``, an event dispatched at a blank line
    only when it has data; the last ``id`` seen sticks to later events.
    """
    retry: int | None = None
    events: list[SseEvent] = []
    last_id: str | None = None
    name, data = "", []
    for line in body.decode().split("\n"):
        if not line:
            if data:
                events.append(SseEvent(name or "message", last_id, "\n".join(data)))
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id":
            last_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
    return retry, events


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


def node_processes(base: Path) -> list[int]:
    """Processes of a private RabbitMQ node whose data lives under ``base``."""
    marker = f"RABBITMQ_MNESIA_BASE={base}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found
