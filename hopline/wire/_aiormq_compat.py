"""Every use of aiormq's private attributes, in one place (tests/wire/test_aiormq_compat.py).

aiormq records RabbitMQ's ``connection.blocked`` / ``connection.unblocked`` in a
name-mangled event and exposes it only through ``Connection.ready()`` (which
waits). If a new aiormq renames it, :func:`unblocked_event` answers None (so
callers treat the connection as not blocked) and the compat test fails loudly.

:mod:`hopline.wire.publish` queues marshalled frames on the connection's writer
itself; it needs aiormq's name-mangled channel publish lock (to see whether an
aiormq publish is being numbered) and its ``ChannelFrame`` (what the writer takes).
If the lock is renamed, :func:`publish_lock_held` answers True and every publish
takes aiormq's own path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiormq.abc import ChannelFrame

__all__ = [
    "PUBLISH_LOCK_ATTRIBUTE",
    "UNBLOCKED_ATTRIBUTE",
    "channel_frame",
    "publish_lock_held",
    "unblocked_event",
]

UNBLOCKED_ATTRIBUTE = "_Connection__connection_unblocked"
# The lock aiormq's Channel holds while it numbers and queues a publish
# (hopline.wire.publish takes its fast path only while nobody holds it).
PUBLISH_LOCK_ATTRIBUTE = "_Channel__lock"


def unblocked_event(aiormq_connection: Any) -> asyncio.Event | None:
    """The event aiormq sets while the broker does not block ``aiormq_connection``."""
    event = getattr(aiormq_connection, UNBLOCKED_ATTRIBUTE, None)
    return event if isinstance(event, asyncio.Event) else None


def publish_lock_held(aiormq_channel: Any) -> bool:
    """Whether an aiormq publish on ``aiormq_channel`` is between numbering and queueing.

    Answers True when the lock cannot be found, so that callers take aiormq's own path.
    """
    lock = getattr(aiormq_channel, PUBLISH_LOCK_ATTRIBUTE, None)
    return not isinstance(lock, asyncio.Lock) or lock.locked()


def channel_frame(payload: bytes) -> ChannelFrame:
    """What aiormq's connection writer takes from its queue: ``payload`` written as is."""
    return ChannelFrame(payload=payload, should_close=False)
