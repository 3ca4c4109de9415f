"""Is an AMQP connection usable right now: blocked by a resource alarm, or silent too long.

Two gaps in aiormq (the AMQP layer under aio-pika) that the gateway fills here:

* RabbitMQ blocks the connections that publish while a resource alarm (memory or
  disk) is raised, and says so with ``connection.blocked`` in answer to their next
  publish; it lifts the block with ``connection.unblocked``. aiormq records both
  but exposes them only through ``Connection.ready()`` (which waits), so
  :func:`is_blocked` reads its flag; with an aiormq that lacks it, it answers
  False and publishes simply end at their deadline.
* aiormq declares a silent connection dead only after ``3 x (heartbeat + 1)``
  seconds (9 s for ``?heartbeat=2``, 3 min for the default 60). :class:`Watchdog`
  probes the connection with a round trip every ``heartbeat / 2`` seconds and
  reports it dead once a probe has gone ``heartbeat`` seconds without an answer
  (so a partition is noticed within about twice the heartbeat interval), then
  closes it so that aio-pika reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from yarl import URL

__all__ = ["Watchdog", "heartbeat_of", "is_blocked"]

log = logging.getLogger(__name__)

AIORMQ_DEFAULT_HEARTBEAT = 60


def is_blocked(connection: Any) -> bool:
    """Whether the broker has blocked ``connection`` (an aio-pika connection) from publishing."""
    transport = getattr(connection, "transport", None)
    underlying = getattr(transport, "connection", None)
    unblocked = getattr(underlying, "_Connection__connection_unblocked", None)
    return unblocked is not None and not unblocked.is_set()


def heartbeat_of(url: str) -> int:
    """The heartbeat timeout an AMQP URL asks for (``?heartbeat=N``; aiormq's default 60)."""
    try:
        return int(URL(url).query.get("heartbeat", AIORMQ_DEFAULT_HEARTBEAT))
    except ValueError:
        return AIORMQ_DEFAULT_HEARTBEAT


class Watchdog:
    """Probe one robust connection; :attr:`silent` once a probe waits ``timeout`` s.

    Args:
        connection: the aio-pika robust connection to watch.
        timeout: seconds a probe may wait for its answer (the heartbeat timeout).
        name: for logs.
    """

    def __init__(self, connection: AbstractRobustConnection, timeout: float, name: str) -> None:
        self.connection = connection
        self.timeout = timeout
        self.name = name
        self.silent = False
        self._channel: AbstractChannel | None = None

    async def run(self) -> None:
        """Probe forever (cancel to stop)."""
        interval = self.timeout / 2
        while True:
            await asyncio.sleep(interval)
            if self.connection.is_closed or not self.connection.connected.is_set():
                continue  # aio-pika knows already and is reconnecting
            if is_blocked(self.connection):
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
        with contextlib.suppress(Exception):  # a failure is an answer: the link is alive
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.connection.channel(publisher_confirms=False)
            await self._channel.set_qos(prefetch_count=0)

    async def _drop(self, probe: asyncio.Future[None]) -> None:
        """Close the silent connection so that aio-pika reconnects; wait for the probe to end."""
        waiting: set[asyncio.Future[Any]] = {probe}
        transport = self.connection.transport
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
