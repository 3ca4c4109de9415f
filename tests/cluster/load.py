"""Paced load with a per-request ledger and a timeline: when each request left, how it ended.

:func:`paced` sends ``hopline.v1`` requests at a fixed rate on one socket of the public
client (through :func:`tests.faults.ledger.drive`: envelopes and matching by id are the
client core's; at most ``window`` unanswered) until ``stop`` is set, and records every
outcome in a :class:`~tests.faults.ledger.Ledger` plus the send time of each request in
a :class:`Timeline`, so a test can say when service came back after a fault: the last
request that failed was sent ``Timeline.outage_after(t)`` seconds after ``t``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tests.faults.ledger import Ledger, drive

__all__ = ["Timeline", "paced"]


@dataclass
class Timeline:
    """Send times (event-loop clock) of the requests of one ledger."""

    ledger: Ledger
    sent_at: dict[str, float] = field(default_factory=dict)

    def failed_since(self, start: float) -> list[tuple[float, str]]:
        """``(seconds after start, code)`` of each request sent after ``start`` that failed."""
        failed = []
        for cid, sent in self.sent_at.items():
            outcome = self.ledger.outcomes.get(cid, [])
            if sent >= start and outcome and outcome[0] != "reply":
                failed.append((sent - start, outcome[0]))
        return sorted(failed)

    def outage_after(self, start: float) -> float:
        """Seconds from ``start`` to the send time of the last request that failed (0: none)."""
        failed = self.failed_since(start)
        return failed[-1][0] if failed else 0.0

    def replies_after(self, start: float) -> int:
        """Requests sent after ``start`` that got their reply."""
        return sum(
            1
            for cid, sent in self.sent_at.items()
            if sent >= start and self.ledger.outcomes.get(cid, [""])[0] == "reply"
        )


async def paced(
    url: str,
    timeline: Timeline,
    prefix: str,
    rate: float,
    stop: asyncio.Event,
    window: int = 256,
    settle: float = 20.0,
) -> None:
    """Send ``rate`` requests per second on one socket until ``stop``; record every answer.

    :func:`tests.faults.ledger.drive` on a schedule (a reply must echo its id); each
    request's send time goes to ``timeline``. When ``window`` requests are unanswered the
    sender waits (the pace then slips; the ledger still counts every request sent).
    After ``stop``, waits up to ``settle`` seconds for the last answers; what is still
    unanswered then stays unanswered in the ledger (a loss).
    """
    await drive(
        url,
        timeline.ledger,
        prefix,
        stop=stop,
        window=window,
        rate=rate,
        settle=settle,
        sent_at=timeline.sent_at,
    )
