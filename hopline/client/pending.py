"""The requests of one connection that wait for their reply (pure: no I/O, no clock).

Two ways to match a reply to its request:

* **by id** (``hopline.v1``): replies come in any order and name their request;
* **by order** (plain mode): each reply belongs to the oldest request still owed one.
  A request that timed out or was abandoned keeps its place, so that its late reply
  is recognised as late instead of being given to the next request.

Every entry holds ``at`` (when it was sent, on the caller's clock, in the caller's
units) and a ``value`` chosen by the caller (a future, a start time...). With a
``timeout``, :meth:`PendingTable.expire` ends every entry whose ``at + timeout`` has
passed. Entries stay in send order, so expiry looks at the oldest ones only: ``at``
must not decrease from one :meth:`~PendingTable.add` to the next (a monotonic clock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Entry", "PendingTable"]

V = TypeVar("V")

Entry = tuple[Any, float, V]
"""``(key, at, value)`` of one request."""


class PendingTable(Generic[V]):
    """Requests waiting for a reply, matched by id or by order (see the module docstring).

    Args:
        by_order: plain mode (match by order) instead of ``hopline.v1`` (by id).
        timeout: how long after ``at`` an entry expires (caller's units); None: never.
    """

    __slots__ = ("_by_id", "_live", "_order", "by_order", "pop", "timeout")

    def __init__(self, *, by_order: bool = False, timeout: float | None = None) -> None:
        self.by_order = by_order
        self.timeout = timeout
        self._by_id: dict[Hashable, tuple[float, V]] = {}  # by id: key -> (at, value)
        self._order: deque[list[Any]] = deque()  # by order: [key, at, value, live]
        self._live = 0
        self.pop: Callable[[Hashable, None], tuple[float, V] | None] = self._by_id.pop
        """By id: ``pop(key, None)`` ends request ``key`` (its reply came) and returns its
        ``(at, value)``, or None if it is not waiting. (``dict.pop`` itself: this is the
        load tester's hot path.)"""

    def __len__(self) -> int:
        """Entries still waiting (expired and abandoned ones do not count)."""
        return self._live if self.by_order else len(self._by_id)

    def __contains__(self, key: Hashable) -> bool:
        if self.by_order:
            return any(entry[0] == key and entry[3] for entry in self._order)
        return key in self._by_id

    def add(self, key: Hashable, at: float, value: V) -> None:
        """Start waiting for the reply to request ``key`` sent at ``at``.

        Raises:
            KeyError: ``key`` is already waiting (by id: two requests cannot share an id).
        """
        if self.by_order:
            self._order.append([key, at, value, True])
            self._live += 1
            return
        if key in self._by_id:
            raise KeyError(f"request id {key!r} is already waiting for a reply")
        self._by_id[key] = (at, value)

    def touch(self, key: Hashable, at: float) -> V | None:
        """By id: request ``key`` is still alive at ``at`` (a chunk came): its timeout restarts.

        Returns its value, or None if it is not waiting.
        """
        entry = self._by_id.pop(key, None)
        if entry is None:
            return None
        self._by_id[key] = (at, entry[1])  # to the end: entries stay ordered by ``at``
        return entry[1]

    def pop_oldest(self) -> Entry[V] | None:
        """By order: the reply that came belongs to the oldest request still owed one.

        Returns its ``(key, at, value)``; None when nothing was owed a reply, or when the
        oldest request expired or was abandoned (this is its late reply).
        """
        order = self._order
        if not order:
            return None
        key, at, value, live = order.popleft()
        if not live:
            return None
        self._live -= 1
        return key, at, value

    def abandon(self, key: Hashable) -> bool:
        """Stop waiting for request ``key`` (the caller gave up); its reply will be unmatched.

        Returns whether it was waiting.
        """
        if not self.by_order:
            return self._by_id.pop(key, None) is not None
        for entry in self._order:
            if entry[0] == key and entry[3]:
                entry[3] = False
                self._live -= 1
                return True
        return False

    def next_deadline(self) -> float | None:
        """When the oldest waiting entry expires; None without a timeout or entries."""
        if self.timeout is None:
            return None
        if not self.by_order:
            for at, _ in self._by_id.values():
                return at + self.timeout
            return None
        for _, at, _, live in self._order:
            if live:
                return at + self.timeout
        return None

    def expire(self, now: float) -> list[Entry[V]]:
        """End the entries whose deadline (``at + timeout``) is at or before ``now``, in order."""
        timeout = self.timeout
        if timeout is None:
            return []
        expired: list[Entry[V]] = []
        if self.by_order:
            for entry in self._order:
                if not entry[3]:
                    continue
                if entry[1] + timeout > now:
                    break
                entry[3] = False
                self._live -= 1
                expired.append((entry[0], entry[1], entry[2]))
            return expired
        by_id = self._by_id
        while by_id:
            key = next(iter(by_id))
            at, value = by_id[key]
            if at + timeout > now:
                break
            del by_id[key]
            expired.append((key, at, value))
        return expired

    def drain(self) -> list[Entry[V]]:
        """End every waiting entry (the connection is gone), oldest first."""
        entries = [(key, at, value) for key, (at, value) in self._by_id.items()]
        entries += [(key, at, value) for key, at, value, live in self._order if live]
        self._by_id.clear()
        self._order.clear()
        self._live = 0
        return entries
