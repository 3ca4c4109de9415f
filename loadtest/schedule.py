"""When the load tester may start a request (pure: times are passed in, nothing sleeps).

* :class:`Budget`: the run's end time and request budget, shared by both models. A
  request may start only before ``end_ns`` and while the budget lasts; once either
  runs out the budget stays :attr:`~Budget.exhausted`.
* :class:`OpenSchedule`: the open model's fixed schedule, request ``k`` due at
  ``load_ns + k * 1e9 / rate``. Each request is timed from its *scheduled* time, so
  a stall of the system under test shows in the latencies (no coordinated omission).
"""

from __future__ import annotations

__all__ = ["NS", "Budget", "OpenSchedule"]

NS = 1_000_000_000


class Budget:
    """The run's end time and request budget.

    Args:
        end_ns: requests may start only before this time (None: no time limit).
        requests: how many requests may start in all (None: no limit).
    """

    __slots__ = ("end_ns", "exhausted", "left")

    def __init__(self, end_ns: int | None, requests: int | None) -> None:
        self.end_ns = end_ns
        self.left = requests
        self.exhausted = False

    def take(self, at_ns: int) -> bool:
        """Spend one request starting at ``at_ns``; False (for good) once none may start."""
        if self.exhausted:
            return False
        if self.end_ns is not None and at_ns >= self.end_ns:
            self.exhausted = True
            return False
        if self.left is not None:
            if self.left <= 0:
                self.exhausted = True
                return False
            self.left -= 1
        return True


class OpenSchedule:
    """Request ``k`` is due at ``load_ns + k * interval``; :meth:`take` hands them out in order."""

    __slots__ = ("interval_ns", "load_ns", "taken")

    def __init__(self, load_ns: int, rate: float) -> None:
        self.load_ns = load_ns
        self.interval_ns = NS / rate
        self.taken = 0

    def due(self, now_ns: int) -> int:
        """How many requests are due at ``now_ns`` and not taken yet."""
        if now_ns < self.load_ns:
            return 0
        return max(0, int((now_ns - self.load_ns) / self.interval_ns) + 1 - self.taken)

    def next_at(self) -> int:
        """Scheduled time of the next request not taken yet."""
        return self.load_ns + int(self.taken * self.interval_ns)

    def take(self) -> int:
        """The next request's scheduled time (and count it as taken)."""
        at = self.next_at()
        self.taken += 1
        return at
