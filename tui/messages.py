"""Messages the I/O workers post to the app; widgets are only touched on the UI side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.message import Message

from tui.stats import GatewayStats

__all__ = [
    "ChunkReceived",
    "ConnectionChanged",
    "ConnectionState",
    "RepliesReceived",
    "Reply",
    "StatsFailed",
    "StatsUpdated",
]

ConnectionState = Literal["connecting", "connected", "reconnecting", "failed"]


@dataclass
class ConnectionChanged(Message):
    """The WebSocket connection changed state.

    ``generation`` counts successful connections: requests sent on an older one
    can no longer be answered. ``retry_at`` (monotonic seconds) is set while
    reconnecting; ``reason`` says why the last attempt or connection ended.
    """

    state: ConnectionState
    generation: int
    reason: str | None = None
    attempt: int = 0
    retry_at: float | None = None
    subprotocol: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One ``hopline.v1`` reply; ``received_at`` is monotonic, taken when the frame arrived."""

    request_id: object
    received_at: float
    data: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class RepliesReceived(Message):
    """The replies read in one go (one message per frame would swamp the UI under bursts)."""

    replies: list[Reply]


@dataclass
class ChunkReceived(Message):
    """One chunk of a streamed reply (``received_at`` monotonic); its Reply follows at the end."""

    request_id: int
    data: str
    received_at: float


@dataclass
class StatsUpdated(Message):
    """A fresh ``/stats`` answer; ``received_at`` is monotonic."""

    stats: GatewayStats
    received_at: float

    def can_replace(self, message: Message) -> bool:
        """A newer answer makes a queued older one pointless."""
        return isinstance(message, StatsUpdated)


@dataclass
class StatsFailed(Message):
    """A ``/stats`` poll failed (the gateway keeps its last good numbers)."""

    reason: str
    at: float
