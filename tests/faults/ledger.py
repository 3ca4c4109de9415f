"""Count every request of a fault scenario: sent, replies, errors by code, lost, duplicated.

A :class:`Ledger` is filled by :func:`drive` (the public ``hopline.v1`` client,
sending unique ids and recording what comes back for each) and checked with
:meth:`Ledger.assert_complete`: every request sent ended in exactly one reply or
one error, each reply is the right one, nothing was lost, and no answer came that
matched no request (a duplicate, or an id never sent).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hopline import ConnectionLost, RequestError, connect

__all__ = ["Ledger", "drive"]


@dataclass
class Ledger:
    """What happened to each request of one scenario."""

    name: str
    sent: list[str] = field(default_factory=list)
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # id -> ["reply"|code, ...]
    wrong: list[str] = field(default_factory=list)  # replies whose data is not the expected one
    close_codes: Counter[int | None] = field(default_factory=Counter)
    latency: dict[str, float] = field(default_factory=dict)  # id -> s from send to first answer
    unmatched: int = 0  # answers that matched no waiting request: duplicates, unknown ids

    def record(self, client_id: str, outcome: str) -> None:
        self.outcomes.setdefault(client_id, []).append(outcome)

    @property
    def replies(self) -> int:
        return sum(o.count("reply") for o in self.outcomes.values())

    @property
    def errors(self) -> Counter[str]:
        return Counter(x for o in self.outcomes.values() for x in o if x != "reply")

    @property
    def answered(self) -> int:
        """Requests with at least one outcome."""
        return sum(1 for i in self.sent if self.outcomes.get(i))

    @property
    def lost(self) -> int:
        return sum(1 for i in self.sent if not self.outcomes.get(i))

    @property
    def max_latency(self) -> float:
        return max(self.latency.values(), default=0.0)

    def summary(self) -> str:
        errors = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items())) or "none"
        return (
            f"[{self.name}] sent {len(self.sent)}, replies {self.replies}, "
            f"errors: {errors}, lost {self.lost}, unmatched {self.unmatched}, "
            f"wrong {len(self.wrong)}"
        )

    def assert_complete(self) -> None:
        """Every request sent got exactly one correct reply or one error."""
        print(self.summary())
        assert len(set(self.sent)) == len(self.sent), "client ids are not unique"
        assert self.lost == 0, self.summary()
        assert self.unmatched == 0, self.summary()  # a duplicate or an unknown id
        assert not self.wrong, f"wrong replies: {self.wrong[:5]}"


async def drive(
    url: str,
    ledger: Ledger,
    prefix: str,
    *,
    count: int | None = None,
    stop: asyncio.Event | None = None,
    window: int = 8,
    pace: float = 0.0,
    rate: float | None = None,
    payload: Callable[[str], str] = lambda cid: cid,
    expect: Callable[[str], str] = lambda data: data,
    settle: float = 30.0,
    sent_at: dict[str, float] | None = None,
) -> None:
    """Send requests on one ``hopline.v1`` socket and record every answer in ``ledger``.

    Sends ``count`` requests (or until ``stop`` is set) with ids ``<prefix>-<n>``,
    at most ``window`` unanswered at once, ``pace`` seconds apart, or with ``rate`` on a
    schedule of ``rate`` per second (a full window makes it slip, and it catches up at
    most 1 s; setting ``stop`` ends the wait at once). Then waits up to
    ``settle`` seconds for the last answers. A reply must equal
    ``expect(payload(id))``. If the gateway closes the socket, its close code is
    counted and the unanswered requests stay unanswered (the ledger shows them lost).
    ``sent_at`` (if given) gets each request's send time (event-loop clock).
    """
    assert count is not None or stop is not None
    loop = asyncio.get_running_loop()
    async with connect(url, timeout=None) as client:  # the gateway's deadlines are under test
        slots = asyncio.Semaphore(window)
        unanswered: set[str] = set()
        sent_at = {} if sent_at is None else sent_at
        all_answered = asyncio.Event()
        all_answered.set()

        def answered(cid: str, future: asyncio.Future[Any]) -> None:
            exc = None if future.cancelled() else future.exception()
            if future.cancelled() or isinstance(exc, ConnectionLost):
                slots.release()  # never answered (the ledger shows it lost); stop sending
                return
            ledger.latency.setdefault(cid, loop.time() - sent_at[cid])
            if isinstance(exc, RequestError):
                ledger.record(cid, exc.code.value)
            elif exc is not None:
                ledger.record(cid, repr(exc))
            else:
                ledger.record(cid, "reply")
                if future.result() != expect(payload(cid)):
                    ledger.wrong.append(f"{cid}: {future.result()!r}")
            unanswered.discard(cid)
            slots.release()
            if not unanswered:
                all_answered.set()

        closed = asyncio.ensure_future(client.wait_closed())
        closed.add_done_callback(lambda _: all_answered.set())  # nothing more will come
        next_at = loop.time()
        try:
            n = 0
            while (count is None or n < count) and not (stop is not None and stop.is_set()):
                await slots.acquire()
                if client.closed:
                    break
                cid = f"{prefix}-{n}"
                n += 1
                ledger.sent.append(cid)
                unanswered.add(cid)
                all_answered.clear()
                sent_at[cid] = loop.time()
                try:
                    future = await client.submit(payload(cid), id=cid)
                except ConnectionLost:  # never left: not a request
                    ledger.sent.pop()
                    del sent_at[cid]
                    unanswered.discard(cid)
                    break
                future.add_done_callback(partial(answered, cid))
                if rate:
                    next_at = max(next_at + 1.0 / rate, loop.time() - 1.0)
                    await _pause(next_at - loop.time(), stop)
                elif pace:
                    await asyncio.sleep(pace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settle):
                    await all_answered.wait()
        finally:
            await client.close()
            await closed
            ledger.unmatched += client.unmatched
            ledger.close_codes[client.close_code] += 1


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Wait ``seconds`` (pacing, not synchronisation), less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(max(seconds, 0))
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0)):
            await stop.wait()
