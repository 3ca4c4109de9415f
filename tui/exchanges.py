"""The conversation: requests, bursts and the replies that resolve them (pure).

Every request gets a fresh integer id, used as the ``hopline.v1`` envelope id, so a
reply finds its request whatever order replies arrive in. A burst is one entry
owning many ids. Requests are tagged with the connection generation they were sent
on: when that connection is lost, their replies can never arrive, and
:meth:`Conversation.fail_before` resolves them with ``disconnected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["DISCONNECTED", "Burst", "Conversation", "Exchange"]

DISCONNECTED = "disconnected"  # client-side error code: the socket closed before the reply


@dataclass(slots=True)
class Exchange:
    """One request typed by the user and its outcome."""

    id: int
    text: str
    sent_wall: datetime
    sent_at: float
    generation: int
    reply: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    rtt: float | None = None
    received_wall: datetime | None = None
    partial: str = ""  # a streamed reply so far
    chunks: int = 0
    first_chunk: float | None = None  # seconds from sending to the first chunk

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error_code is not None


@dataclass(slots=True)
class Burst:
    """``count`` identical requests sent at once, summarised as one entry."""

    id: int
    count: int
    text: str
    sent_wall: datetime
    sent_at: float
    generation: int
    pending: set[int] = field(default_factory=set)
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return not self.pending

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


Entry = Exchange | Burst


class Conversation:
    """Requests awaiting or holding their replies, in the order they were sent."""

    def __init__(self, max_entries: int = 500) -> None:
        self.max_entries = max_entries
        self.entries: list[Entry] = []
        self._owner: dict[int, Entry] = {}
        self._next_id = 1
        self._dropped: list[Entry] = []

    def _new_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _append(self, entry: Entry) -> None:
        self.entries.append(entry)
        excess = len(self.entries) - self.max_entries
        if excess > 0:
            dropped = self.entries[:excess]
            del self.entries[:excess]
            self._dropped.extend(dropped)
            for old in dropped:
                ids = old.pending if isinstance(old, Burst) else {old.id}
                for request_id in ids:
                    self._owner.pop(request_id, None)

    def pop_dropped(self) -> list[Entry]:
        """Entries removed to respect ``max_entries`` since the last call (oldest first)."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def request(self, text: str, sent_at: float, wall: datetime, generation: int) -> Exchange:
        """Record one request about to be sent."""
        exchange = Exchange(self._new_id(), text, wall, sent_at, generation)
        self._owner[exchange.id] = exchange
        self._append(exchange)
        return exchange

    def burst(
        self, count: int, text: str, sent_at: float, wall: datetime, generation: int
    ) -> tuple[Burst, list[int]]:
        """Record a burst of ``count`` requests; returns it and the ids to send."""
        burst = Burst(self._new_id(), count, text, wall, sent_at, generation)
        ids = [self._new_id() for _ in range(count)]
        burst.pending.update(ids)
        for request_id in ids:
            self._owner[request_id] = burst
        self._append(burst)
        return burst, ids

    def resolve(
        self,
        request_id: object,
        received_at: float,
        wall: datetime,
        data: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> tuple[Entry, float] | None:
        """Attach a reply (``data``) or an error (``(code, message)``) to its request.

        Returns:
            The entry that changed and the round-trip time, or None when no pending
            request has this id (late, duplicate, or a reply without an id).
        """
        if not isinstance(request_id, int):
            return None
        entry = self._owner.pop(request_id, None)
        if entry is None:
            return None
        rtt = max(0.0, received_at - entry.sent_at)
        if isinstance(entry, Exchange):
            entry.rtt = rtt
            entry.received_wall = wall
            if error is None:
                entry.reply = data if data is not None else ""
            else:
                entry.error_code, entry.error_message = error
        else:
            entry.pending.discard(request_id)
            if error is None:
                entry.ok += 1
                entry.rtts.append(rtt)
            else:
                entry.errors[error[0]] = entry.errors.get(error[0], 0) + 1
            if entry.done:
                entry.finished_at = received_at
        return entry, rtt

    def chunk(self, request_id: object, data: str, received_at: float) -> Exchange | None:
        """Grow a pending request's streamed reply; the Exchange that changed, or None."""
        entry = self._owner.get(request_id) if isinstance(request_id, int) else None
        if not isinstance(entry, Exchange):
            return None
        if entry.first_chunk is None:
            entry.first_chunk = max(0.0, received_at - entry.sent_at)
        entry.partial += data
        entry.chunks += 1
        return entry

    def fail_before(
        self, generation: int, received_at: float, wall: datetime, message: str
    ) -> list[Entry]:
        """Fail every pending request sent on a connection older than ``generation``."""
        changed: dict[int, Entry] = {}
        for request_id, entry in list(self._owner.items()):
            if entry.generation < generation:
                self.resolve(request_id, received_at, wall, error=(DISCONNECTED, message))
                changed[id(entry)] = entry
        return list(changed.values())

    @property
    def outstanding(self) -> int:
        """Requests still waiting for a reply."""
        return len(self._owner)
