"""The processor: consume requests, call the handler, publish the reply, then ack.

Contract:

* Consumes the plain input queue (one AMQP RPC request per message, any client
  that sets ``reply_to`` and ``correlation_id``) and the batch queue (hopline
  batches, see :mod:`hopline.wire.batch`) with one prefetch window for both.
  At most ``prefetch`` messages, and (see :mod:`processor.flow`) about
  ``prefetch_bytes`` of them, are held unacked.
* The handler runs as :mod:`processor.calls` says: at most ``concurrency`` calls at
  once (each request of a batch is one call), plain functions in a thread pool.
* A reply goes to ``reply_to`` with the request's ``correlation_id``; the request
  is acked only after the broker confirmed the reply (at-least-once processing).
* A handler exception becomes an error reply (``processor_error``, or the code of a
  :class:`~hopline.handler.Refusal`); the request is acked and the processor keeps going.
* A request whose ``x-hopline-deadline-ms`` header (unix milliseconds) has passed is acked
  without running the handler: its client has already been told ``timeout``. The
  header is checked on delivery, when a handling slot frees up, and between the
  items of a batch handled one by one (an inline handler). When the deadline passes
  while the handler runs, the call is cancelled (an async handler is cancelled, a
  generator closed, a thread's result abandoned), its slot freed, and the message
  acked without a reply.
* Streams (generator functions; a plain or async function that returns a generator
  gets its chunks joined) and early answers (a request of a batch that ends while
  others still run, handlers not inline): a message carrying
  :data:`~hopline.wire.amqp.STREAM_HEADER` gets partial reply batches (see
  :mod:`processor.streams`), then its final reply once they are confirmed; a
  partial publish that fails leaves the message unacked for redelivery.
* Lifecycle hooks: ``startup`` runs in :meth:`Processor.start` before connecting
  (it raises :class:`~processor.handlers.StartupError`), ``shutdown`` at the end of
  :meth:`Processor.stop` (and when ``start`` fails after ``startup``).
* With a delivery limit (see :mod:`hopline.wire.amqp`), a redelivered request is
  counted: on a classic queue it is re-published with an incremented
  ``x-hopline-attempts`` header and the original acked (the count survives the
  next crash); on the delivery after ``delivery_limit`` failed ones it is rejected
  to ``<input_queue>.dead`` and its client gets ``processor_error``. So a request
  that kills its processor every time runs the handler at most ``delivery_limit``
  times. A request in a batch shares the fate of its batch.
* :meth:`Processor.stop` (SIGTERM) cancels the consumers first, then finishes,
  replies to and acks every message already delivered, then closes.
* Connections (:class:`~hopline.wire.connect.Link`): ``rabbitmq_url`` may list
  several nodes; the processor connects to one (shuffled order), declares and
  consumes anew on every connection, and moves to another node when it is lost.
  A watchdog (:class:`~hopline.wire.liveness.Watchdog`) drops a connection that
  has not answered for one heartbeat timeout. When a connection is lost, the
  work delivered on it is abandoned at once (its acks cannot reach the broker,
  which redelivers those requests to a live consumer): no handler starts for it
  and its handling slots are free for the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from hopline.wire.amqp import (
    DEADLINE_HEADER,
    RUN_HEADER,
    STREAM_HEADER,
)
from hopline.wire.batch import (
    BATCH_CONTENT_TYPE,
)
from hopline.wire.connect import Link
from hopline.wire.incoming import Incoming
from hopline.wire.liveness import Watchdog, heartbeat_of
from hopline.wire.publish import publish
from processor.calls import Caller
from processor.config import ProcessorSettings
from processor.deliveries import count_delivery
from processor.flow import Consumers
from processor.handlers import Handler, Hooks
from processor.handling import Handling, expired
from processor.streams import ControlQueue, MessageStreams

__all__ = ["READY_LINE", "Processor"]

log = logging.getLogger(__name__)

#: How the ``hopline processor`` command's line on stderr starts once it consumes
#: (``hopline up`` waits for it from each of its processors).
READY_LINE = "hopline processor ready"


class Processor:
    """One processor process' worth of consumers. See the module docstring."""

    def __init__(
        self, settings: ProcessorSettings, handler: Handler, hooks: Hooks | None = None
    ) -> None:
        self.settings = settings
        self.caller = Caller(handler, settings.concurrency or settings.prefetch)
        self.hooks = hooks or Hooks()
        self.control = ControlQueue()
        self.consumers = Consumers(
            self._on_message, settings.prefetch_bytes, settings.prefetch, self._set_prefetch
        )
        self.handling = Handling(self.caller)
        # Only generator functions send partial replies (a function that returns a
        # generator gets its chunks joined): no per-message stream state otherwise.
        self._streaming = self.caller.shape.kind in ("gen", "agen")
        self._link: Link | None = None
        self._channel: AbstractChannel | None = None
        self._in_progress: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._generation = 0  # connections made; a delivery belongs to one of them
        self._of_generation: dict[asyncio.Task[Any], int] = {}
        self._abandoned_tasks: set[asyncio.Task[Any]] = set()
        self._watchdog_task: asyncio.Task[None] | None = None
        self.abandoned = 0  # deliveries dropped because their connection was lost

    @property
    def handled(self) -> int:
        """Handler calls so far."""
        return self.caller.calls

    @property
    def failed(self) -> int:
        """Handler calls that ended in an error, plus malformed batches."""
        return self.caller.failures + self.handling.malformed

    async def start(self, connect_timeout: float = 10.0) -> None:
        """Run the startup hook, connect to one of the addresses, declare, start consuming.

        Raises:
            StartupError: the handler module's ``startup()`` raised (nothing consumed).
            BrokerUnavailable: no address accepted a connection in time.
        """
        await self.hooks.run_startup()
        settings = self.settings
        self._link = Link(
            settings.rabbitmq_url,
            "hopline-processor",
            self._setup,
            self._on_lost,
            attempt_timeout=min(settings.connect_attempt_timeout, connect_timeout),
            order=settings.rabbitmq_order,
        )
        try:
            await self._link.start(connect_timeout)
        except BaseException:
            await self._close()
            raise
        heartbeat = heartbeat_of(settings.rabbitmq_url)
        if heartbeat > 0:  # notice a silent (partitioned) connection within ~2 heartbeats
            watchdog = Watchdog(self._link, heartbeat, "processor")
            self._watchdog_task = asyncio.get_running_loop().create_task(watchdog.run())

    @property
    def connected(self) -> bool:
        """Whether the processor is consuming on a live connection right now."""
        return self._link is not None and self._link.ready.is_set()

    async def _setup(self, conn: AbstractConnection) -> None:
        """On every new connection: channel, prefetch, control queue, input queues, consumers."""
        channel = await conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        await self.control.start(channel)
        plain, batch = await self.settings.topology.declare(channel)
        self._generation += 1
        self._channel = channel
        await self.consumers.restart([plain, batch])
        log.info(
            "consuming %s and %s (prefetch %d, %d bytes; handler %s, concurrency %d)",
            plain.name,
            batch.name,
            self.settings.prefetch,
            self.settings.prefetch_bytes,
            self.caller.shape.kind,
            self.caller.concurrency,
        )

    async def _set_prefetch(self, count: int) -> None:
        assert self._channel is not None
        await self._channel.set_qos(prefetch_count=count)

    def _on_lost(self, exc: BaseException | None) -> None:
        """The connection is gone: abandon everything delivered on it, at once."""
        lost = self._generation
        for task, generation in list(self._of_generation.items()):
            if generation == lost and not task.done():
                self._abandoned_tasks.add(task)
                task.cancel()
                self.abandoned += 1
        if self._abandoned_tasks:
            log.warning(
                "connection lost; %d delivered requests left to the broker for redelivery",
                len(self._abandoned_tasks),
            )

    @property
    def in_progress(self) -> int:
        """Messages delivered to this processor and not yet acked (or dropped)."""
        return len(self._in_progress)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop consuming, finish (and ack) what is in progress, close, run the shutdown hook."""
        with contextlib.suppress(Exception):
            await self.consumers.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                # Deliveries already on their way when the consumer was cancelled
                # start new tasks; wait until none is left.
                while self._in_progress:
                    await asyncio.wait(set(self._in_progress))
        await self._close()
        log.info("stopped after %d requests (%d failed)", self.handled, self.failed)
        abandoned = self.caller.abandoned_running
        if abandoned:
            log.warning("%d abandoned handler calls still run in threads; not waiting", abandoned)

    async def _close(self) -> None:
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
        if self._link is not None:
            await self._link.close()
        self.caller.close()
        try:
            await self.hooks.run_shutdown()
        except Exception as exc:
            log.error("handler shutdown failed: %s: %s", type(exc).__name__, exc)

    async def _on_message(self, message: Incoming) -> None:
        task = asyncio.current_task()
        assert task is not None
        size = len(message.body)
        self._in_progress.add(task)
        self.consumers.taken(size)
        self._of_generation[task] = self._generation
        try:
            await self._process(message)
        except asyncio.CancelledError:
            if task not in self._abandoned_tasks:
                raise
            task.uncancel()  # abandoned with its connection (see _on_lost): a normal end
        finally:
            self._in_progress.discard(task)
            self.consumers.released(size)
            self._of_generation.pop(task, None)
            self._abandoned_tasks.discard(task)

    async def _process(self, message: Incoming) -> None:
        headers = message.headers
        deadline = headers.get(DEADLINE_HEADER)
        if not isinstance(deadline, int):
            deadline = None
        if expired(deadline):
            await message.ack()
            return
        if self.settings.topology.delivery_limit is not None:
            assert self._channel is not None
            if await count_delivery(
                message, deadline, self.settings.topology, self._channel, self._reply
            ):
                return
        if not message.reply_to:
            log.warning(
                "request without reply_to dropped (correlation id %s)", message.correlation_id
            )
            await message.ack()
            return
        streams = None
        if (
            (
                self._streaming
                or (not self.caller.inline and message.content_type == BATCH_CONTENT_TYPE)
            )
            and headers.get(STREAM_HEADER)
            and message.correlation_id
            and self._channel is not None
        ):
            streams = self.control.open(self._channel, message.correlation_id, message.reply_to)
        try:
            try:
                result = await self._handle(message, deadline, streams)
            except _StreamBroken:
                return
            if result is None:  # the deadline passed: nobody waits for a reply
                await message.ack()
                return
            body, content_type, reply_headers = result
            if streams is not None and streams.sent:
                reply_headers = {**(reply_headers or {}), RUN_HEADER: streams.run}
        finally:
            if streams is not None:
                self.control.close(streams)
                await streams.close()
        if await self._reply(message, body, content_type, reply_headers):
            await message.ack()

    async def _handle(
        self, message: Incoming, deadline: int | None, streams: MessageStreams | None
    ) -> tuple[bytes, str, dict[str, Any] | None] | None:
        """The reply to ``message``, or None when its deadline passed (before or while running).

        A stream whose partial replies could not be published raises
        :class:`_StreamBroken` (the message is left for redelivery).
        """
        at = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            at = loop.time() + (deadline / 1000 - time.time())
        try:
            async with asyncio.timeout_at(at):
                if message.content_type == BATCH_CONTENT_TYPE:
                    result = await self.handling.batch(message, deadline, streams)
                else:
                    result = await self.handling.plain(message, deadline, streams)
                if result is not None and streams is not None and not await streams.drain():
                    await message.nack(requeue=True)
                    raise _StreamBroken
                return result
        except TimeoutError:
            return None

    async def _reply(
        self,
        message: Incoming,
        body: bytes,
        content_type: str,
        headers: dict[str, Any] | None,
    ) -> bool:
        """Publish a reply to ``message`` and wait for its confirm; False (and nacked) if not."""
        assert self._channel is not None
        assert message.reply_to is not None
        # pamqp properties and hopline.wire.publish (not aio_pika.Message and
        # Exchange.publish): the same frames for less CPU per reply. message_id is set
        # (the fast path needs one); only the broker's confirm is awaited.
        properties = Basic.Properties(
            content_type=content_type,
            correlation_id=message.correlation_id,
            delivery_mode=1,  # transient
            headers=headers,
            message_id=message.correlation_id,
        )
        try:
            if self._channel.is_closed:
                raise ConnectionError("channel closed")
            channel = await self._channel.get_underlay_channel()
            await publish(channel, body, routing_key=message.reply_to, properties=properties)
        except Exception:
            # Not acked: the broker redelivers the request once the channel is back.
            log.warning("reply publish failed; request left for redelivery", exc_info=True)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return False
        return True


class _StreamBroken(Exception):
    """Partial replies could not be published; the message was nacked for redelivery."""
