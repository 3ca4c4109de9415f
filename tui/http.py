"""A tiny async HTTP GET for the gateway's JSON endpoints (cancellable, no extra dependency)."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from hopline.client.handshake import classify, classify_status

__all__ = ["HttpError", "get_json"]


class HttpError(Exception):
    """The request failed: no connection, a non-200 status, or a body that is not JSON."""


async def get_json(url: str, headers: dict[str, str] | None = None, limit: int = 1 << 20) -> Any:
    """GET ``url`` (http or https) and decode its JSON body.

    The caller bounds the wait (``asyncio.timeout``); cancelling closes the socket.

    Raises:
        HttpError: see the class; ``OSError`` is wrapped too.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl.create_default_context() if secure else None, limit=limit
        )
    except OSError as exc:
        raise HttpError(f"cannot connect to {parts.netloc}: {classify(exc)}") from None
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        chunks: list[bytes] = []
        size = 0
        while chunk := await reader.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise HttpError(f"answer from {parts.netloc} exceeds {limit} bytes")
        raw = b"".join(chunks)
    except OSError as exc:
        raise HttpError(f"{parts.netloc}: {exc.strerror or exc}") from None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        raise HttpError(f"{parts.netloc} did not answer HTTP")
    status = int(fields[1])
    if status != 200:
        raise HttpError(f"{classify_status(status)} from {parts.path or '/'}")
    try:
        return json.loads(body)
    except ValueError:
        raise HttpError(f"{parts.path or '/'} did not return JSON") from None
