"""Every use of aiormq's private attributes, in one place (tests/wire/test_aiormq_compat.py).

aiormq records RabbitMQ's ``connection.blocked`` / ``connection.unblocked`` in a
name-mangled event and exposes it only through ``Connection.ready()`` (which
waits). If a new aiormq renames it, :func:`unblocked_event` answers None (so
callers treat the connection as not blocked) and the compat test fails loudly.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["UNBLOCKED_ATTRIBUTE", "unblocked_event"]

UNBLOCKED_ATTRIBUTE = "_Connection__connection_unblocked"


def unblocked_event(aiormq_connection: Any) -> asyncio.Event | None:
    """The event aiormq sets while the broker does not block ``aiormq_connection``."""
    event = getattr(aiormq_connection, UNBLOCKED_ATTRIBUTE, None)
    return event if isinstance(event, asyncio.Event) else None
