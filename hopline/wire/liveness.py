"""Is an AMQP connection usable right now: blocked by a resource alarm, or silent too long.

Two gaps in aiormq (the AMQP layer under aio-pika) that the gateway fills here:

* RabbitMQ blocks the connections that publish while a resource alarm (memory or
  disk) is raised, and says so with ``connection.blocked`` in answer to their next
  publish; it lifts the block with ``connection.unblocked``. aiormq records both
  but exposes them only through ``Connection.ready()`` (which waits), so
  :func:`is_blocked` reads its flag (through :mod:`hopline.wire._aiormq_compat`);
  with an aiormq that lacks it, it answers False and publishes simply end at
  their deadline.
* aiormq declares a silent connection dead only after ``3 x (heartbeat + 1)``
  seconds (9 s for ``?heartbeat=2``, 3 min for the default 60). :class:`Watchdog`
  probes the connection with a round trip every ``heartbeat / 2`` seconds and
  reports it dead once a probe has gone ``heartbeat`` seconds without an answer
  (so a partition is noticed within about twice the heartbeat interval), then
  closes it so that aio-pika (or a :class:`~hopline.wire.connect.Link`) reconnects.
  It watches either one connection or whatever connection a ``Link`` holds now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractConnection
from yarl import URL

from hopline.wire._aiormq_compat import unblocked_event

__all__ = ["Watchdog", "heartbeat_of", "is_blocked"]

log = logging.getLogger(__name__)

AIORMQ_DEFAULT_HEARTBEAT = 60


def is_blocked(connection: Any) -> bool:
    """Whether the broker has blocked ``connection`` (an aio-pika connection) from publishing."""
    transport = getattr(connection, "transport", None)
    unblocked = unblocked_event(getattr(transport, "connection", None))
    return unblocked is not None and not unblocked.is_set()


class HoldsConnection(Protocol):
    """Anything with a current connection it can give up (a :class:`~hopline.wire.connect.Link`)."""

    @property
    def connection(self) -> AbstractConnection | None: ...

    def drop(self, reason: str) -> None: ...


def heartbeat_of(url: str) -> int:
    """The heartbeat timeout an AMQP URL (the first of a list) asks for (aiormq's default 60)."""
    url = url.split(",")[0].strip()
    try:
        return int(URL(url).query.get("heartbeat", AIORMQ_DEFAULT_HEARTBEAT))
    except ValueError:
        return AIORMQ_DEFAULT_HEARTBEAT


class Watchdog:
    """Probe one connection; :attr:`silent` once a probe waits ``timeout`` s.

    Args:
        connection: the aio-pika connection to watch, or a holder of the current one.
        timeout: seconds a probe may wait for its answer (the heartbeat timeout).
        name: for logs.
    """

    def __init__(
        self, connection: AbstractConnection | HoldsConnection, timeout: float, name: str
    ) -> None:
        self.source = connection
        self.timeout = timeout
        self.name = name
        self.silent = False
        self._channel: AbstractChannel | None = None
        self._watched: AbstractConnection | None = None

    @property
    def connection(self) -> AbstractConnection | None:
        """The connection watched right now."""
        if isinstance(self.source, AbstractConnection):
            return self.source
        return self.source.connection

    async def run(self) -> None:
        """Probe forever (cancel to stop)."""
        interval = self.timeout / 2
        while True:
            await asyncio.sleep(interval)
            connection = self.connection
            if connection is not self._watched:  # a new connection: start afresh
                self._watched, self._channel, self.silent = connection, None, False
            if connection is None or connection.is_closed or not connection.connected.is_set():
                continue  # aio-pika knows already and is reconnecting
            if is_blocked(connection):
                continue  # a blocked connection is silent on purpose
            probe = asyncio.ensure_future(self._probe())
            done, _ = await asyncio.wait({probe}, timeout=self.timeout)
            if done:
                self.silent = False
                continue
            self.silent = True
            log.warning(
                "%s connection: no answer from RabbitMQ for %g s, reconnecting",
                self.name,
                self.timeout,
            )
            await self._drop(probe)

    async def _probe(self) -> None:
        connection = self._watched
        with contextlib.suppress(Exception):  # a failure is an answer: the link is alive
            if self._channel is None or self._channel.is_closed:
                assert connection is not None
                self._channel = await connection.channel(publisher_confirms=False)
            await self._channel.set_qos(prefetch_count=0)

    async def _drop(self, probe: asyncio.Future[None]) -> None:
        """Give up the silent connection so that it is replaced; wait for the probe to end."""
        if not isinstance(self.source, AbstractConnection):
            self.source.drop("no answer from RabbitMQ")  # the link reconnects at once
            probe.cancel()
            self._channel = None
            return
        waiting: set[asyncio.Future[Any]] = {probe}
        transport = self._watched.transport if self._watched is not None else None
        if transport is not None:
            reason = ConnectionError("no answer from RabbitMQ")
            waiting.add(asyncio.ensure_future(transport.connection.close(reason)))
        done, pending = await asyncio.wait(waiting, timeout=3 * self.timeout)
        for future in pending:
            future.cancel()
        for future in done:
            if not future.cancelled():
                future.exception()  # retrieved: a failed close is expected here
        self._channel = None
