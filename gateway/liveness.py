"""Whether an AMQP connection can take a publish right now (pure reads, no I/O).

RabbitMQ blocks the connections that publish while a resource alarm (memory or
disk) is raised, and says so with ``connection.blocked`` in answer to their next
publish; it lifts the block with ``connection.unblocked``. aiormq records both
but exposes them only through ``Connection.ready()`` (which waits), so
:func:`is_blocked` reads its flag; with an aiormq that lacks it, it answers
False and publishes simply end at their deadline.
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_blocked"]


def is_blocked(connection: Any) -> bool:
    """Whether the broker has blocked ``connection`` (an aio-pika connection) from publishing."""
    transport = getattr(connection, "transport", None)
    underlying = getattr(transport, "connection", None)
    unblocked = getattr(underlying, "_Connection__connection_unblocked", None)
    return unblocked is not None and not unblocked.is_set()
