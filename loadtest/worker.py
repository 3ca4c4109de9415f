"""One load-generating event loop: opens its share of connections and drives the load.

A worker runs the whole life of its connections on one asyncio loop, driven by
callbacks and timers rather than per-request tasks:

1. **ramp-up**: its :class:`~loadtest.pool.Pool` spreads the connection attempts evenly
   from ``start_ns`` to ``load_ns`` (and reopens those the server drops while loading);
2. **load** from ``load_ns`` until ``end_ns`` (or until its request budget is spent):
   *closed* model: every connection keeps ``in_flight`` requests outstanding and
   sends the next one from the reply callback (after ``think`` seconds if set);
   *open* model: a timer sends requests on a fixed schedule (``rate`` per second,
   round-robin over open connections), each timed from its *scheduled* time;
3. **drain**: no new requests; waits for the outstanding ones (each gets at most
   ``timeout``), then closes every connection.

Once a second (aligned on ``load_ns``) it calls ``report`` with the interval's
counter deltas and encoded latency histogram; a final report (``final=True``)
carries the rest and the connection statistics.

This module is the hot path (sending, replies, timeouts, reports); opening, reopening
and closing connections is :mod:`loadtest.pool`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from loadtest.connection import Connection
from loadtest.messages import Codec
from loadtest.pool import RECONNECT_DELAY, Pool
from loadtest.schedule import NS, Budget, OpenSchedule
from loadtest.stats import Outcome, Recorder
from loadtest.tally import LEDGER_CSV_HEADER, Tally

__all__ = ["LATE_AFTER", "NS", "Worker", "WorkerPlan", "run_worker"]

_now = time.monotonic_ns
LATE_AFTER = 0.010  # open model: a request sent this much after its schedule counts as late
Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything one worker needs (picklable: sent to worker processes).

    Times are ``time.monotonic_ns()`` values, shared by every process of the host.
    ``end_ns`` ``None`` means no time limit (``requests`` then must be set).
    """

    worker: int
    url: str
    codec: Codec
    connections: int
    in_flight: int
    think: float
    rate: float | None
    requests: int | None
    timeout: float
    connect_timeout: float
    start_ns: int
    load_ns: int
    end_ns: int | None
    ledger_path: str | None = None
    ledger_format: str = "jsonl"
    token: str | None = field(default=None, repr=False)


class Worker:
    """The load of one event loop (see the module docstring)."""

    def __init__(self, plan: WorkerPlan, report: Report) -> None:
        self.plan = plan
        self.report = report
        self.loop = asyncio.get_running_loop()
        self.tally = Tally(
            plan.worker, plan.load_ns, plan.ledger_format if plan.ledger_path else None
        )
        self.first_chunk_recorder = Recorder()  # time to first chunk of every reply
        self.streamed = 0  # replies that came in more than one frame (chunks)
        self.chunks = 0  # frames of those replies
        self.waiting = 0
        self.sending = False
        self.budget = Budget(plan.end_ns, plan.requests)
        self.schedule = OpenSchedule(plan.load_ns, plan.rate) if plan.rate else None
        self.first_send_ns: int | None = None
        self.last_done_ns: int | None = None
        self.stopped_ns: int | None = None  # when sending stopped (if it ever started)
        self._end: tuple[int, int] = (0, 0)  # (second index, open connections) at the end
        self.stop_requested = False
        self._done_sending = asyncio.Event()
        self._drained = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}  # one per timer chain
        self._rr = 0
        self._dirty: list[Connection] = []
        self._late_ns = int(LATE_AFTER * NS)
        self.pool = Pool(plan, self, self, int(plan.timeout * NS))
        self._ledger: IO[str] | None = None
        if plan.ledger_path:
            self._ledger = open(plan.ledger_path, "w", encoding="utf-8")  # noqa: SIM115
            if plan.ledger_format == "csv" and plan.worker == 0:
                self._ledger.write(LEDGER_CSV_HEADER)
        self._no_conn_since: int | None = None
        self._give_up_ns = int((plan.connect_timeout + 2 * RECONNECT_DELAY + 1) * NS)

    # ---- life cycle

    async def run(self) -> dict[str, Any]:
        """Ramp up, load, drain, close; return the final report (also passed to ``report``)."""
        plan, pool = self.plan, self.pool
        try:
            self._schedule_ticks()
            opener = pool.open_all()
            await self.sleep_until(plan.load_ns)
            if not pool.ready:
                await opener  # every attempt ends within its connect timeout
            if pool.opened and not self.stop_requested:
                self._start_load()
                end = None if plan.end_ns is None else (plan.end_ns - _now()) / NS
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(end):
                        await self._done_sending.wait()
            self._stop_sending()
            if self.waiting:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(plan.timeout + 0.5):
                        await self._drained.wait()
            self._expire(_now() + 1)  # anything left waited a full timeout
            self._end = ((_now() - plan.load_ns) // NS, len(pool.ready))
            await pool.cancel_attempts()
            await pool.close_all()
            return self._final()
        finally:
            for timer in self._timers.values():
                timer.cancel()
            pool.cancel_now()
            if self._ledger is not None:
                self._flush_ledger()
                self._ledger.close()

    def request_stop(self) -> None:
        """Stop sending now (Ctrl-C): drain and report as usual."""
        self.stop_requested = True
        self._stop_sending()

    async def sleep_until(self, when_ns: int) -> None:
        """Wait until ``when_ns`` or until sending stops (the pool's ramp-up uses it too)."""
        delay = (when_ns - _now()) / NS
        if delay > 0 and not self.stop_requested:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._done_sending.wait()

    # ---- load

    def _start_load(self) -> None:
        self.sending = True
        self.first_send_ns = _now()
        self.pool.load_started()
        if self.schedule is not None:
            self._tick_open()
        else:
            for conn in self.pool.ready:
                self._fill(conn)
                conn.flush()
        self._sweep()

    def _stop_sending(self) -> None:
        if self.sending and self.stopped_ns is None:
            self.stopped_ns = _now()
        self.sending = False
        self._done_sending.set()
        if not self.waiting:
            self._drained.set()

    def _may_send(self) -> bool:
        if not self.sending:
            return False
        if not self.budget.take(_now()):
            self._stop_sending()
            return False
        return True

    def _send(self, conn: Connection, start_ns: int) -> None:
        conn.send(start_ns)
        self.waiting += 1
        self.tally.count("sent")

    def _fill(self, conn: Connection) -> None:
        want = self.plan.in_flight - conn.waiting
        now = _now()
        for _ in range(want):
            if not self._may_send():
                return
            self._send(conn, now)

    def _think_done(self, conn: Connection) -> None:
        if not conn.lost and self._may_send():
            self._send(conn, _now())
            conn.flush()

    def _tick_open(self) -> None:
        schedule = self.schedule
        if not self.sending or schedule is None:
            return
        now = _now()
        tally, ready, dirty = self.tally, self.pool.ready, self._dirty
        for _ in range(schedule.due(now)):
            if not self.budget.take(schedule.next_at()):
                self._stop_sending()
                break
            scheduled = schedule.take()
            if not ready:
                tally.count("unsent")
                continue
            conn = ready[self._rr % len(ready)]
            self._rr += 1
            self._send(conn, scheduled)
            if now - scheduled > self._late_ns:
                tally.count("late")
            if not conn.dirty:
                conn.dirty = True
                dirty.append(conn)
        for conn in dirty:
            conn.flush()
        dirty.clear()
        if self.sending:
            self._later("open", max(0.0, (schedule.next_at() - _now()) / NS), self._tick_open)

    # ---- outcomes (called by connections)

    def on_reply(
        self,
        conn: Connection,
        seq: int,
        start_ns: int,
        now_ns: int,
        outcome: Outcome,
        code: str | None,
        first_ns: int | None = None,
        chunks: int = 1,
    ) -> None:
        """A reply resolved request ``seq`` of ``conn``; a closed loop sends the next one.

        Its time to last chunk is the latency; its time to first chunk (the same for a
        reply in one frame) goes to its own histogram.
        """
        self.tally.replied(conn.index, seq, start_ns, now_ns, outcome, code)
        if outcome is not Outcome.ERROR:
            self.first_chunk_recorder.record(
                ((now_ns if first_ns is None else first_ns) - start_ns) // 1000
            )
            if chunks > 1:
                self.streamed += 1
                self.chunks += chunks
        self.waiting -= 1
        self.last_done_ns = now_ns
        if self.sending:
            if self.schedule is not None:
                return
            if self.plan.think:
                self.loop.call_later(self.plan.think, self._think_done, conn)
            elif self._may_send():
                self._send(conn, now_ns)
        elif not self.waiting:
            self._drained.set()

    def on_unresolved(self, conn: Connection, seq: int, start_ns: int, outcome: Outcome) -> None:
        """Request ``seq`` of ``conn`` timed out or its connection was lost."""
        self.tally.unresolved(conn.index, seq, start_ns, outcome)
        self.waiting -= 1
        self.last_done_ns = _now()
        if self.sending:
            closed_loop = self.schedule is None
            if closed_loop and outcome is Outcome.TIMEOUT and not conn.lost and self._may_send():
                self._send(conn, _now())
                conn.flush()
        elif not self.waiting:
            self._drained.set()

    def on_unmatched(self) -> None:
        """A reply that belongs to no outstanding request."""
        self.tally.count("unmatched")

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        """A connection closed: its pool forgets it (and reopens it while the load runs)."""
        self.pool.on_lost(conn)

    def on_open(self, conn: Connection) -> None:
        """A connection opened (the pool calls it): a running closed loop loads it at once."""
        if self.sending and self.schedule is None:
            self._fill(conn)
            conn.flush()

    # ---- timers

    def _later(self, chain: str, delay: float, callback: Callable[[], None]) -> None:
        self._timers[chain] = self.loop.call_later(delay, callback)

    def _sweep(self) -> None:
        now = _now()
        self._expire(now)
        if self.sending and not self.pool.ready and self.schedule is None:
            # closed loop with every connection lost: give up after a while
            if self._no_conn_since is None:
                self._no_conn_since = now
            elif now - self._no_conn_since > self._give_up_ns:
                self._stop_sending()
        else:
            self._no_conn_since = None
        if self.sending or self.waiting:
            self._later("sweep", min(0.25, max(0.02, self.plan.timeout / 10)), self._sweep)

    def _expire(self, now_ns: int) -> None:
        for conn in list(self.pool.conns):
            if conn.waiting:
                conn.expire(now_ns)
                conn.flush()

    def _schedule_ticks(self) -> None:
        plan = self.plan
        first = -math.ceil((plan.load_ns - plan.start_ns) / NS) + 1
        self._next_tick = first
        self._tick_report()

    def _tick_report(self) -> None:
        k = self._next_tick
        at = self.plan.load_ns + k * NS
        delay = (at - _now()) / NS
        if delay > 0:
            self._later("report", delay, self._tick_report)
            return
        self.report(self._interval(second=k - 1))
        self._next_tick = k + 1
        self._tick_report()

    # ---- reports

    def _interval(self, second: int, open_connections: int | None = None) -> dict[str, Any]:
        self._flush_ledger()
        return {
            "worker": self.plan.worker,
            "second": second,
            **self.tally.interval(),
            "open": len(self.pool.ready) if open_connections is None else open_connections,
            "final": False,
        }

    def _final(self) -> dict[str, Any]:
        second, open_connections = self._end
        report = self._interval(int(second), open_connections)
        ends = [t for t in (self.last_done_ns, self.stopped_ns) if t is not None]
        report.update(
            final=True,
            **self.pool.stats(),
            first_chunk_hist=self.first_chunk_recorder.take(),
            chunks=self.chunks,
            streamed=self.streamed,
            first_send_ns=self.first_send_ns,
            last_done_ns=max(ends) if ends else None,
            stopped=self.stop_requested,
        )
        self.report(report)
        return report

    # ---- ledger

    def _flush_ledger(self) -> None:
        if self._ledger is not None and self.tally.rows:
            self._ledger.write(self.tally.take_rows())


async def run_worker(plan: WorkerPlan, report: Report) -> dict[str, Any]:
    """Run one worker on the running loop; returns its final report."""
    worker = Worker(plan, report)
    return await worker.run()
