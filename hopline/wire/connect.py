"""Opening AMQP connections over a list of broker addresses (one node or a cluster).

Contract:

* An address list is written as ``RABBITMQ_URL="amqp://a/,amqp://b/"`` or as a
  repeated ``--rabbitmq-url``; :func:`parse_amqp_urls` splits and checks it and is
  the one place a malformed URL is refused (``ValueError`` with a one-line message,
  which the command line turns into a usage error, exit 2).
* :func:`open_connection` tries the addresses in shuffled order (or as listed),
  each for at most ``attempt_timeout`` seconds, and returns the first connection
  made; so a dead node costs one attempt, never the whole start-up.
* :class:`Link` keeps one connection open for its owner over the whole list: it
  runs the owner's ``setup`` on every new connection (declare, consume), sets
  :attr:`Link.ready` only once ``setup`` is done, calls ``on_lost`` as soon as the
  connection is gone, and reconnects (a fresh shuffle each round, the address
  just lost tried last: a partitioned node only answers with silence, costing a
  whole attempt timeout) until it is closed. Channels are not restored behind the
  owner's back: ``setup`` builds everything anew on each connection.
* An attempt that fails or is cancelled closes the connection object it made
  (:func:`_connect_once`): ``aio_pika.connect`` leaves it unclosed, and aio-pika's
  ``__del__`` then schedules ``close()`` on whatever loop is current when the
  garbage collector finds it, a coroutine that may never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractConnection

from hopline.wire.addresses import (
    AMQP_SCHEMES,
    parse_amqp_urls,
    primary_url,
    redact_url,
    vhost_of,
)

__all__ = [
    "AMQP_SCHEMES",
    "BrokerUnavailable",
    "Link",
    "Order",
    "open_connection",
    "parse_amqp_urls",
    "primary_url",
    "redact_url",
]

log = logging.getLogger(__name__)

Order = Literal["shuffle", "listed"]

#: Pause between two rounds over every address when none answered.
RETRY_PAUSE = 0.5
#: Errors that mean "this address did not give us a connection".
_ATTEMPT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    ConnectionError,
    aio_pika.exceptions.AMQPError,
)


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached at start-up; the message is one line for the user."""


def _ordered(urls: Sequence[str], order: Order) -> list[str]:
    result = list(urls)
    if order == "shuffle":
        random.shuffle(result)
    return result


async def open_connection(
    urls: str | Sequence[str],
    name: str,
    attempt_timeout: float,
    order: Order = "shuffle",
) -> AbstractConnection:
    """One (non-robust) connection to the first address that accepts, trying each once.

    Raises:
        BrokerUnavailable: no address gave a connection; the message names each one
            with its reason.
    """
    reasons: list[str] = []
    for url in _ordered(parse_amqp_urls(urls), order):
        try:
            async with asyncio.timeout(attempt_timeout):
                return await _connect_once(url, name)
        except _ATTEMPT_ERRORS as exc:
            reasons.append(f"{redact_url(url)}: {_reason(exc, attempt_timeout, url)}")
    raise BrokerUnavailable("cannot reach RabbitMQ at " + "; ".join(reasons))


def _reason(exc: BaseException, timeout: float, url: str) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc)
    if "got <Connection.Close" in text:
        # aiormq keeps only the repr of the broker's Connection.Close: after a good
        # login, RabbitMQ refuses the connection.open of a missing or forbidden vhost.
        return (
            f"the broker refused virtual host {vhost_of(url)!r} (it does not exist, or this "
            "user has no permissions on it; see rabbitmqctl list_vhosts, list_permissions)"
        )
    return text or type(exc).__name__


Setup = Callable[[AbstractConnection], Awaitable[None]]
Lost = Callable[[BaseException | None], None]


class Link:
    """One connection kept open over an address list; see the module docstring.

    Args:
        urls: broker addresses (a comma-separated string or a sequence).
        name: connection name shown in the management UI.
        setup: coroutine run on every new connection before :attr:`ready` is set;
            if it raises, the connection is closed and the next address tried.
        on_lost: called (synchronously) when a ready connection is lost.
        attempt_timeout: seconds one connection attempt (connect + setup) may take.
        order: ``shuffle`` (default) or ``listed``.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        name: str,
        setup: Setup,
        on_lost: Lost | None = None,
        attempt_timeout: float = 5.0,
        order: Order = "shuffle",
    ) -> None:
        self.urls = parse_amqp_urls(urls)
        self.name = name
        self.setup = setup
        self.on_lost = on_lost
        self.attempt_timeout = attempt_timeout
        self.order = order
        self.connection: AbstractConnection | None = None
        self.ready = asyncio.Event()
        self.connections_made = 0
        self.last_errors: list[str] = []
        self._current: str | None = None
        self._lost: asyncio.Future[BaseException | None] | None = None
        self._closing_tasks: set[asyncio.Future[None]] = set()
        self._suspect: str | None = None  # the address whose connection was lost last
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def url(self) -> str | None:
        """Address of the current connection (redacted), None while disconnected."""
        conn = self.connection
        return redact_url(str(conn.url)) if conn is not None and self.ready.is_set() else None

    async def start(self, timeout: float) -> None:
        """Connect within ``timeout``, then keep the connection (reconnecting) until closed.

        Like aio-pika's ``fail_fast``, start-up gives up after one round in which every
        address failed (a wrong password or a stopped broker is reported at once);
        once connected, the link retries for ever.

        Raises:
            BrokerUnavailable: no address gave a connection (each one's reason, in one
                line), or none within ``timeout``; nothing is left running.
        """
        loop = asyncio.get_running_loop()
        # The first failed round's reasons travel with the news: by the time this coroutine
        # runs again (a loaded machine can pause it past RETRY_PAUSE), the link may have
        # started the next round, whose reasons are still empty.
        round_failed: asyncio.Future[list[str]] = loop.create_future()
        self._task = loop.create_task(self._run(round_failed))
        ready = asyncio.ensure_future(self.ready.wait())
        try:
            await asyncio.wait(
                {ready, round_failed}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            ready.cancel()
        if self.ready.is_set():
            return
        # No round finished within the timeout: the reasons of the round under way, if any.
        errors = round_failed.result() if round_failed.done() else list(self.last_errors)
        round_failed.cancel()
        await self.close()
        reason = "; ".join(errors) if errors else f"no connection within {timeout:g} s"
        raise BrokerUnavailable(reason)

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        self.ready.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        conn, self.connection = self.connection, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def drop(self, reason: str) -> None:
        """Give up the current connection now (found silent): ``on_lost``, then reconnect.

        A silent connection cannot be closed politely (the broker would have to answer),
        so the link does not wait for the close: it is finished in the background.
        """
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(ConnectionError(reason))

    async def _run(self, round_failed: asyncio.Future[list[str]]) -> None:
        while not self._closing:
            conn = await self._connect_round()
            if conn is None:
                if not round_failed.done():
                    round_failed.set_result(self.last_errors)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
            self._lost = lost

            def closed(_: object, exc: BaseException | None = None, lost=lost) -> None:
                if not lost.done():
                    lost.set_result(exc)

            conn.close_callbacks.add(closed)
            if conn.is_closed:
                closed(conn)
            self.connection = conn
            self.connections_made += 1
            self.ready.set()
            log.info("%s connected to %s", self.name, redact_url(str(conn.url)))
            exc = await lost
            self.ready.clear()
            if self._closing:
                return
            self._suspect = self._current
            log.warning("%s connection to %s lost: %s", self.name, redact_url(str(conn.url)), exc)
            if self.on_lost is not None:
                self.on_lost(exc)
            closing = asyncio.ensure_future(_close_quietly(conn, self.attempt_timeout))
            self._closing_tasks.add(closing)
            closing.add_done_callback(self._closing_tasks.discard)

    async def _connect_round(self) -> AbstractConnection | None:
        """Try every address once; a connection whose ``setup`` finished, or None.

        Why each address failed is in :attr:`last_errors` afterwards.
        """
        errors: list[str] = []
        self.last_errors = errors
        order = _ordered(self.urls, self.order)
        if self._suspect in order:  # the address just lost goes last: it may be partitioned
            order.remove(self._suspect)
            order.append(self._suspect)
        for url in order:
            conn: AbstractConnection | None = None
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    conn = await _connect_once(url, self.name)
                    await self.setup(conn)
                self._current = url
                return conn
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                raise
            except Exception as exc:
                message = f"cannot reach RabbitMQ at {redact_url(url)}: " + _reason(
                    exc, self.attempt_timeout, url
                )
                errors.append(message)
                log.info("%s: %s", self.name, message)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):
                            await conn.close()
        return None


async def _connect_once(url: str, name: str) -> AbstractConnection:
    """``aio_pika.connect(url)`` named ``name``; on failure or cancellation the connection
    object it made is closed before the exception goes on (see the module docstring)."""
    made: list[AbstractConnection] = []

    def connection_class(*args: Any, **kwargs: Any) -> AbstractConnection:
        conn = aio_pika.Connection(*args, **kwargs)
        made.append(conn)
        return conn

    try:
        return await aio_pika.connect(
            url, client_properties={"connection_name": name}, connection_class=connection_class
        )
    except BaseException:
        for conn in made:
            with contextlib.suppress(Exception):
                await conn.close()
        raise


async def _close_quietly(conn: AbstractConnection, timeout: float) -> None:
    """Close a lost connection, giving up after ``timeout`` (a silent peer never answers;
    aiormq's own heartbeat check then ends it)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await conn.close()
