"""Opening AMQP connections, shared by the gateway and the processor."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

__all__ = ["BrokerUnavailable", "connect", "redact_url"]


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
