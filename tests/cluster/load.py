"""Paced load with a per-request ledger and a timeline: when each request left, how it ended.

:func:`paced` sends ``hopline.v1`` requests at a fixed rate on one socket (at most
``window`` unanswered) until ``stop`` is set, and records every outcome in a
:class:`~tests.faults.ledger.Ledger` plus the send time of each request in a
:class:`Timeline`, so a test can say when service came back after a fault: the
last request that failed was sent ``Timeline.outage_after(t)`` seconds after ``t``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.faults.ledger import Ledger

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

    A reply must echo its id. When ``window`` requests are unanswered the sender
    waits (the pace then slips; the ledger still counts every request sent). After
    ``stop``, waits up to ``settle`` seconds for the last answers; what is still
    unanswered then stays unanswered in the ledger (a loss).
    """
    ledger = timeline.ledger
    loop = asyncio.get_running_loop()
    async with connect(url, subprotocols=["hopline.v1"]) as ws:  # type: ignore[list-item]
        slots = asyncio.Semaphore(window)
        unanswered: set[str] = set()
        idle = asyncio.Event()
        idle.set()

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for frame in ws:
                    obj = json.loads(frame)
                    cid = obj["id"]
                    if cid in timeline.sent_at:
                        ledger.latency.setdefault(cid, loop.time() - timeline.sent_at[cid])
                    if "error" in obj:
                        ledger.record(cid, obj["error"]["code"])
                    else:
                        ledger.record(cid, "reply")
                        if obj["data"] != cid:
                            ledger.wrong.append(f"{cid}: {obj['data']!r}")
                    if cid in unanswered:
                        unanswered.discard(cid)
                        slots.release()
                    if not unanswered:
                        idle.set()
            ledger.close_codes[ws.close_code] += 1
            idle.set()

        reader = asyncio.ensure_future(read())
        interval = 1.0 / rate
        next_at = loop.time()
        n = 0
        try:
            while not stop.is_set() and not reader.done():
                await slots.acquire()
                cid = f"{prefix}-{n}"
                n += 1
                ledger.sent.append(cid)
                unanswered.add(cid)
                idle.clear()
                timeline.sent_at[cid] = loop.time()
                try:
                    await ws.send(json.dumps({"id": cid, "data": cid}))
                except ConnectionClosed:
                    ledger.sent.pop()
                    del timeline.sent_at[cid]
                    unanswered.discard(cid)
                    break
                next_at = max(next_at + interval, loop.time() - 1.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(next_at - loop.time(), 0)):
                        await stop.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settle):
                    await idle.wait()
        finally:
            if not reader.done():
                await ws.close()
            await reader
