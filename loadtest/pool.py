"""The connections of one load-test worker: ramp-up, reopening, closing, and their counts.

A :class:`Pool` opens a worker's connections spread evenly from ``start_ns`` to
``load_ns`` (one short-lived task per attempt, bounded by the connect timeout),
reopens a connection the server dropped while the load runs (after
``RECONNECT_DELAY``; one dropped before the load starts is reopened when it starts),
and closes them all at the end (a closing handshake, then an abort after 3 s).

It owns no request: sending, replies and timeouts stay on the worker's hot path, which
reads :attr:`Pool.ready` (the open connections, in opening order) directly. The pool
asks its :class:`Owner` (the worker) whether the load runs and hands it each
connection that opens meanwhile. :meth:`Pool.stats` gives the connection figures of
the final report.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import TYPE_CHECKING, Any, Protocol

from websockets.uri import parse_uri

from loadtest.connection import Connection, HandshakeFailed, Sink, failure_reason
from loadtest.stats import Recorder

if TYPE_CHECKING:
    from loadtest.worker import WorkerPlan

__all__ = ["NOT_ATTEMPTED", "RECONNECT_DELAY", "STILL_CONNECTING", "Owner", "Pool"]

_now = time.monotonic_ns
NOT_ATTEMPTED = "not attempted (run stopped)"
STILL_CONNECTING = "still connecting at the end"
RECONNECT_DELAY = 0.5  # seconds before reopening a connection the server dropped
CLOSE_ALL_GRACE = 3.0  # seconds for the closing handshakes before the rest is aborted


class Owner(Protocol):
    """What a pool asks of its worker."""

    sending: bool  # the load runs: reopen dropped connections, load new ones
    stop_requested: bool  # Ctrl-C: attempt no further connection

    def on_open(self, conn: Connection) -> None:
        """``conn`` just opened (and joined :attr:`Pool.ready`) while the load may run."""

    async def sleep_until(self, when_ns: int) -> None:
        """Wait until ``when_ns`` (``time.monotonic_ns``) or until sending stops."""


class Pool:
    """The connections of one worker (see the module docstring)."""

    def __init__(self, plan: WorkerPlan, owner: Owner, sink: Sink, timeout_ns: int) -> None:
        self.plan = plan
        self.owner = owner
        self.sink = sink  # what each connection reports its requests' outcomes to
        self.loop = asyncio.get_running_loop()
        self.uri = parse_uri(plan.url)
        self.ssl = ssl.create_default_context() if self.uri.secure else None
        self.timeout_ns = timeout_ns
        self.ready: list[Connection] = []  # open, in opening order: the ones to load
        self.conns: set[Connection] = set()  # established and not lost (closing included)
        self.connect_recorder = Recorder()
        self.failures: dict[str, int] = {}
        self.opened = 0
        self.max_open = 0
        self.drops = 0
        self.reconnects = 0
        self._load_started = False
        self._closing_all = False
        self._all_closed = asyncio.Event()
        self._dropped_early: list[int] = []  # connections lost before the load started
        self._last_seq: dict[int, int] = {}  # a reopened connection continues its numbering
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- opening

    def open_all(self) -> asyncio.Task[None]:
        """Start the ramp-up; the task ends when every attempt has ended."""
        return self._spawn(self._open_all())

    def load_started(self) -> None:
        """The load starts: reopen the connections dropped during the ramp-up."""
        self._load_started = True
        for index in self._dropped_early:
            self._reconnect(index)
        self._dropped_early.clear()

    async def _open_all(self) -> None:
        plan = self.plan
        n = plan.connections
        span = plan.load_ns - plan.start_ns
        attempts = []
        for i in range(n):
            await self.owner.sleep_until(plan.start_ns + span * i // n)
            if self.owner.stop_requested:
                self._failed(NOT_ATTEMPTED, n - i)
                break
            attempts.append(self._spawn(self._open(i)))
        if attempts:
            await asyncio.gather(*attempts, return_exceptions=True)

    async def _open(self, index: int, reconnect: bool = False) -> None:
        plan, uri = self.plan, self.uri
        started = _now()
        conn = Connection(self.sink, index, uri, plan.codec, plan.token, self.timeout_ns)
        conn.seq = self._last_seq.get(index, 0)
        try:
            async with asyncio.timeout(plan.connect_timeout):
                await self.loop.create_connection(lambda: conn, uri.host, uri.port, ssl=self.ssl)
                await conn.handshake
        except (OSError, TimeoutError, HandshakeFailed) as exc:
            conn.abort()
            self._failed(failure_reason(exc, plan.connect_timeout))
            if reconnect and self.owner.sending:  # dropped by the server: retry while loading
                self.loop.call_later(RECONNECT_DELAY, self._reconnect, index)
            return
        except asyncio.CancelledError:
            conn.abort()
            self._failed(STILL_CONNECTING)
            raise
        self.connect_recorder.record((_now() - started) // 1000)
        self.opened += 1
        if self._closing_all:
            conn.close()
            return
        self.conns.add(conn)
        self.ready.append(conn)
        self.max_open = max(self.max_open, len(self.ready))
        self.owner.on_open(conn)

    def _failed(self, reason: str, count: int = 1) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + count

    def _reconnect(self, index: int) -> None:
        if self.owner.sending:
            self.reconnects += 1
            self._spawn(self._open(index, reconnect=True))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- losing and closing

    def on_lost(self, conn: Connection) -> None:
        """``conn`` closed: forget it; reopen it if the server dropped it while loading."""
        self.conns.discard(conn)
        self._last_seq[conn.index] = conn.seq
        if self._closing_all and not self.conns:
            self._all_closed.set()
        with contextlib.suppress(ValueError):
            self.ready.remove(conn)
        if not conn.closing:
            self.drops += 1
            if self.owner.sending:
                self.loop.call_later(RECONNECT_DELAY, self._reconnect, conn.index)
            elif not self._load_started:
                self._dropped_early.append(conn.index)

    async def cancel_attempts(self) -> None:
        """Cancel the attempts still under way (each counts as still connecting)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cancel_now(self) -> None:
        """Cancel every task of the pool without waiting (the worker is ending)."""
        for task in list(self._tasks):
            task.cancel()

    async def close_all(self) -> None:
        """Close every connection; abort those not closed within ``CLOSE_ALL_GRACE``."""
        self._closing_all = True
        for conn in list(self.conns):
            conn.close()
        if self.conns:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_ALL_GRACE):
                    await self._all_closed.wait()
        for conn in list(self.conns):
            conn.abort()

    # ---- figures

    def stats(self) -> dict[str, Any]:
        """The connection fields of the worker's final report."""
        return {
            "connect_hist": self.connect_recorder.take(),
            "connect_failures": dict(self.failures),
            "opened": self.opened,
            "max_open": self.max_open,
            "drops": self.drops,
            "reconnects": self.reconnects,
        }
