"""One socket's in-flight window and reply order, as a pure object (no I/O, no clock).

The session asks :attr:`Flow.readable` before reading a frame, tells the flow
about every frame it will answer (:meth:`Flow.admit` or, in plain mode where
replies keep request order, :meth:`Flow.slot`), resolves slots as results come
(:meth:`Flow.resolve` returns the slots now deliverable, in request order), and
calls :meth:`Flow.sent` once each answer has been handed to the socket.

Contract:

* A frame is in flight from ``admit``/``slot`` until ``sent``; it counts once
  toward ``window`` (requests) and with its size toward ``max_bytes``.
* ``readable`` is False while ``window`` frames or ``max_bytes`` bytes are in
  flight. The byte cap is checked before a frame is read, so it may be
  exceeded by at most one frame.
* Slots are delivered in the order they were opened, each exactly once: a
  resolved slot waits behind every unresolved slot opened before it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["UNSET", "Flow", "Slot"]

UNSET: Any = object()


class Slot:
    """A plain-mode request's place in the reply order."""

    __slots__ = ("result", "size", "t0")

    def __init__(self, size: int, t0: float) -> None:
        self.result: Any = UNSET
        self.size = size
        self.t0 = t0  # when the frame was read (for latency)


class Flow:
    """Window and byte accounting plus in-order delivery for one socket.

    Args:
        window: frames in flight at most (>= 1).
        max_bytes: request bytes in flight at most (0: no byte cap).
    """

    __slots__ = ("_ordered", "in_flight", "in_flight_bytes", "max_bytes", "window")

    def __init__(self, window: int, max_bytes: int = 0) -> None:
        if window < 1 or max_bytes < 0:
            raise ValueError("window must be >= 1 and max_bytes >= 0")
        self.window = window
        self.max_bytes = max_bytes or (1 << 62)
        self.in_flight = 0
        self.in_flight_bytes = 0
        self._ordered: deque[Slot] = deque()

    @property
    def readable(self) -> bool:
        """Whether another frame may be read."""
        return self.in_flight < self.window and self.in_flight_bytes < self.max_bytes

    @property
    def waiting(self) -> int:
        """Plain-mode slots not yet delivered."""
        return len(self._ordered)

    def admit(self, size: int) -> None:
        """Count a frame answered out of order (hopline.v1, or refused at once)."""
        self.in_flight += 1
        self.in_flight_bytes += size

    def slot(self, size: int, t0: float) -> Slot:
        """Count a plain-mode frame and open its place in the reply order."""
        self.in_flight += 1
        self.in_flight_bytes += size
        slot = Slot(size, t0)
        self._ordered.append(slot)
        return slot

    def resolve(self, slot: Slot, result: Any) -> list[Slot]:
        """Record ``slot``'s result; the slots now deliverable, in order (possibly none)."""
        slot.result = result
        ordered = self._ordered
        if not ordered or ordered[0] is not slot:
            return []
        ready = []
        while ordered and ordered[0].result is not UNSET:
            ready.append(ordered.popleft())
        return ready

    def sent(self, size: int) -> bool:
        """One answer left for the socket; True if the flow is readable again."""
        self.in_flight -= 1
        self.in_flight_bytes -= size
        return self.in_flight < self.window and self.in_flight_bytes < self.max_bytes

    def clear(self) -> None:
        """Forget undelivered slots (the socket is gone)."""
        self._ordered.clear()
