"""Opening AMQP connections, shared by the gateway and the processor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

__all__ = ["AMQP_SCHEMES", "BrokerUnavailable", "connect", "parse_amqp_urls", "redact_url"]

AMQP_SCHEMES = ("amqp", "amqps")


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached at start-up; the message is one line for the user."""


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and errors."""
    try:
        parsed = URL(url)
    except ValueError:
        return "<invalid url>"
    if parsed.password:
        parsed = parsed.with_password("***")
    return str(parsed)


def parse_amqp_urls(values: str | Iterable[str]) -> list[str]:
    """Split and check broker addresses: each value may itself be a comma-separated list.

    The one place a malformed broker URL is refused; the command line turns the
    ``ValueError`` into a usage error (exit 2) before anything starts.

    Returns the URLs in the order given, without blanks or duplicates.

    Raises:
        ValueError: no address, or one is not ``amqp[s]://[user[:password]@]host[:port][/vhost]``
            (one line, password redacted).
    """
    items = [values] if isinstance(values, str) else list(values)
    urls: list[str] = []
    for item in items:
        for raw in str(item).split(","):
            text = raw.strip()
            if not text:
                continue
            _check_url(text)
            if text not in urls:
                urls.append(text)
    if not urls:
        raise ValueError("no RabbitMQ address given (expected amqp://user:password@host:port/)")
    return urls


def _check_url(text: str) -> None:
    shown = redact_url(text) if "://" in text else text
    hint = "expected amqp://user:password@host:port/vhost"
    try:
        url = URL(text)
        port = url.port
    except ValueError:
        raise ValueError(f"not an AMQP URL: {shown!r} ({hint})") from None
    if url.scheme not in AMQP_SCHEMES:
        raise ValueError(f"not an AMQP URL: {shown!r} (scheme must be amqp or amqps; {hint})")
    if not url.host:
        raise ValueError(f"not an AMQP URL: {shown!r} (no host; {hint})")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"not an AMQP URL: {shown!r} (bad port; {hint})")
    for key in ("heartbeat", "connection_timeout"):
        value = url.query.get(key)
        if value is not None and not value.isdigit():
            raise ValueError(f"not an AMQP URL: {shown!r} ({key} must be a whole number)")


async def connect(url: str, names: list[str], timeout: float) -> list[AbstractRobustConnection]:
    """Open one robust connection per name (shown in the management UI) within ``timeout``.

    Raises:
        BrokerUnavailable: a connection could not be made in time; the ones already
            open are closed first.
    """
    connections: list[AbstractRobustConnection] = []
    try:
        async with asyncio.timeout(timeout):
            for name in names:
                connections.append(
                    await aio_pika.connect_robust(url, client_properties={"connection_name": name})
                )
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
        for conn in connections:
            await conn.close()
        reason = str(exc) or type(exc).__name__
        raise BrokerUnavailable(f"cannot reach RabbitMQ at {redact_url(url)}: {reason}") from None
    return connections
