"""The processor: consume requests, call the handler, publish the reply, then ack.

Contract:

* Consumes the plain input queue (one AMQP RPC request per message, any client
  that sets ``reply_to`` and ``correlation_id``) and the batch queue (hopline
  batches, see :mod:`hopline.wire.batch`) with one prefetch window for both.
* At most ``concurrency`` messages are handled at once.
* A reply goes to ``reply_to`` with the request's ``correlation_id``; the request
  is acked only after the broker confirmed the reply (at-least-once processing).
* A handler exception becomes an error reply (``processor_error``); the request is
  acked and the processor keeps going.
* A request whose ``x-hopline-deadline-ms`` header (unix milliseconds) has passed is acked
  without running the handler: its client has already been told ``timeout``. The
  header is checked when a handling slot frees up, and between the items of a batch
  handled one by one (a synchronous handler).
* With a delivery limit (see :mod:`hopline.wire.amqp`), a redelivered request is
  counted: on a classic queue it is re-published with an incremented
  ``x-hopline-attempts`` header and the original acked (the count survives the
  next crash); on the delivery after ``delivery_limit`` failed ones it is rejected
  to ``<input_queue>.dead`` and its client gets ``processor_error``. So a request
  that kills its processor every time runs the handler at most ``delivery_limit``
  times. A request in a batch shares the fate of its batch.
* :meth:`Processor.stop` (SIGTERM) cancels the consumers first, then finishes,
  replies to and acks every message already delivered, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from hopline.wire.amqp import (
    ATTEMPTS_HEADER,
    BINARY_CONTENT_TYPE,
    DEADLINE_HEADER,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    TEXT_CONTENT_TYPE,
    QueueTopology,
)
from hopline.wire.batch import (
    BATCH_CONTENT_TYPE,
    BatchFormatError,
    ItemError,
    decode_requests,
    encode_replies,
)
from hopline.wire.connect import connect
from hopline.wire.defaults import DEFAULT_RABBITMQ_URL
from hopline.wire.errors import ErrorCode
from processor.handlers import Handler, is_async

__all__ = ["Processor", "ProcessorSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    """Everything a processor needs.

    Attributes:
        rabbitmq_url: AMQP URL of the broker.
        topology: the input queues (same arguments as the gateway's).
        prefetch: AMQP prefetch count (messages delivered but not yet acked).
        concurrency: messages handled at once (defaults to ``prefetch``).
    """

    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    topology: QueueTopology = field(default_factory=QueueTopology)
    prefetch: int = 64
    concurrency: int | None = None


class Processor:
    """One processor process' worth of consumers. See the module docstring."""

    def __init__(self, settings: ProcessorSettings, handler: Handler) -> None:
        self.settings = settings
        self.handler = handler
        self._handler_is_async = is_async(handler)
        self.handled = 0
        self.failed = 0
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._consumers: list[tuple[Any, str]] = []
        self._slots = asyncio.Semaphore(settings.concurrency or settings.prefetch)
        self._in_progress: set[asyncio.Task[Any]] = set()

    async def start(self, connect_timeout: float = 10.0) -> None:
        """Connect, declare the queues, start consuming.

        Raises:
            BrokerUnavailable: the broker did not accept a connection in time.
        """
        (self._conn,) = await connect(
            self.settings.rabbitmq_url, ["hopline-processor"], connect_timeout
        )
        self._channel = await self._conn.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self.settings.prefetch)
        plain, batch = await self.settings.topology.declare(self._channel)
        for queue in (plain, batch):
            tag = await queue.consume(self._on_message)
            self._consumers.append((queue, tag))
        log.info(
            "consuming %s and %s (prefetch %d)", plain.name, batch.name, self.settings.prefetch
        )

    @property
    def in_progress(self) -> int:
        """Messages delivered to this processor and not yet acked (or dropped)."""
        return len(self._in_progress)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop consuming, finish (and ack) what is in progress, close the connection."""
        for queue, tag in self._consumers:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        self._consumers.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                # Deliveries already on their way when the consumer was cancelled
                # start new tasks; wait until none is left.
                while self._in_progress:
                    await asyncio.wait(set(self._in_progress))
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        log.info("stopped after %d requests (%d failed)", self.handled, self.failed)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_progress.add(task)
        try:
            async with self._slots:
                await self._process(message)
        finally:
            self._in_progress.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        deadline = headers.get(DEADLINE_HEADER)
        if not isinstance(deadline, int):
            deadline = None
        if _expired(deadline):
            await message.ack()
            return
        if self.settings.topology.delivery_limit is not None and await self._count_delivery(
            message, deadline
        ):
            return
        if not message.reply_to:
            log.warning(
                "request without reply_to dropped (correlation id %s)", message.correlation_id
            )
            await message.ack()
            return
        if message.content_type == BATCH_CONTENT_TYPE:
            result = await self._handle_batch(message.body, deadline)
            if result is None:  # the deadline passed between two items
                await message.ack()
                return
            body, content_type, reply_headers = result
        else:
            body, content_type, reply_headers = await self._handle_plain(message)
        if await self._reply(message, body, content_type, reply_headers):
            await message.ack()

    async def _reply(
        self,
        message: AbstractIncomingMessage,
        body: bytes,
        content_type: str,
        headers: dict[str, Any] | None,
    ) -> bool:
        """Publish a reply to ``message`` and wait for its confirm; False (and nacked) if not."""
        assert self._channel is not None
        assert message.reply_to is not None
        reply = aio_pika.Message(
            body,
            correlation_id=message.correlation_id,
            content_type=content_type,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        try:
            await self._channel.default_exchange.publish(
                reply, routing_key=message.reply_to, mandatory=False
            )
        except Exception:
            # Not acked: the broker redelivers the request once the channel is back.
            log.warning("reply publish failed; request left for redelivery", exc_info=True)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return False
        return True

    async def _count_delivery(self, message: AbstractIncomingMessage, deadline: int | None) -> bool:
        """Enforce the delivery limit; True when ``message`` was dealt with here.

        A request past the limit is rejected to the dead-letter queue after its
        client got ``processor_error``. A redelivered request on a classic queue
        is re-published with its failure count and the original acked; the copy
        is handled when it comes back.
        """
        topology = self.settings.topology
        limit = topology.delivery_limit
        assert limit is not None
        failed = _failed_deliveries(message)
        if failed >= limit:
            log.warning(
                "request %s failed %d times; dead-lettered to %s",
                message.correlation_id,
                failed,
                topology.dead_letter_queue,
            )
            if message.reply_to:
                text = (
                    f"request failed {failed} times (the processor died or lost its "
                    f"connection); dead-lettered to {topology.dead_letter_queue}"
                )
                body, content_type, headers = _error_reply(message, text)
                if not await self._reply(message, body, content_type, headers):
                    return True
            await message.reject(requeue=False)
            return True
        if not message.redelivered or DELIVERY_COUNT_HEADER in (message.headers or {}):
            return False  # a first delivery, or a queue that counts by itself
        assert self._channel is not None
        remaining = None if deadline is None else (deadline - time.time() * 1000) / 1000
        if remaining is not None and remaining <= 0.001:  # expired meanwhile: nobody waits
            await message.ack()
            return True
        copy = aio_pika.Message(
            message.body,
            headers={**(message.headers or {}), ATTEMPTS_HEADER: failed},
            content_type=message.content_type,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            expiration=remaining if remaining is not None else message.expiration,
            delivery_mode=message.delivery_mode,
        )
        try:
            await self._channel.default_exchange.publish(
                copy, routing_key=message.routing_key or topology.input_queue
            )
        except Exception:
            log.warning("could not re-publish a redelivered request", exc_info=True)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return True
        await message.ack()
        return True

    async def _handle_plain(
        self, message: AbstractIncomingMessage
    ) -> tuple[bytes, str, dict[str, Any] | None]:
        binary = message.content_type == BINARY_CONTENT_TYPE
        payload: str | bytes
        if binary:
            payload = message.body
        else:
            try:
                payload = message.body.decode()
            except UnicodeDecodeError:
                payload = message.body
                binary = True
        result = await self._call(payload)
        if isinstance(result, ItemError):
            return result.message.encode(), TEXT_CONTENT_TYPE, {ERROR_HEADER: result.code}
        if isinstance(result, bytes):
            return result, BINARY_CONTENT_TYPE, None
        return result.encode(), TEXT_CONTENT_TYPE, None

    async def _handle_batch(
        self, body: bytes, deadline: int | None = None
    ) -> tuple[bytes, str, dict[str, Any] | None] | None:
        """The reply to a batch, or None when its deadline passed before every item ran."""
        try:
            payloads = decode_requests(body)
        except BatchFormatError as exc:
            self.failed += 1
            message = f"malformed request batch: {exc}"
            return message.encode(), TEXT_CONTENT_TYPE, {ERROR_HEADER: ErrorCode.BAD_REQUEST.value}
        if self._handler_is_async:
            results = list(await asyncio.gather(*(self._call(p) for p in payloads)))
        else:
            results = []
            for payload in payloads:
                if _expired(deadline):
                    return None
                results.append(await self._call(payload))
        return encode_replies(results), BATCH_CONTENT_TYPE, None

    async def _call(self, payload: str | bytes) -> str | bytes | ItemError:
        self.handled += 1
        try:
            result = self.handler(payload)
            if isinstance(result, Awaitable):
                result = await result
        except Exception as exc:
            self.failed += 1
            log.debug("handler raised", exc_info=True)
            return ItemError(ErrorCode.PROCESSOR_ERROR, f"{type(exc).__name__}: {exc}")
        if isinstance(result, str | bytes):
            return result
        self.failed += 1
        return ItemError(
            ErrorCode.PROCESSOR_ERROR,
            f"handler returned {type(result).__name__}, expected str or bytes",
        )


def _expired(deadline: int | None) -> bool:
    """Whether a ``x-hopline-deadline-ms`` value lies in the past."""
    return deadline is not None and time.time() * 1000 > deadline


def _failed_deliveries(message: AbstractIncomingMessage) -> int:
    """Deliveries of ``message`` that ended without an ack, this one excluded."""
    headers = message.headers or {}
    count = headers.get(DELIVERY_COUNT_HEADER)  # quorum queues count by themselves
    if isinstance(count, int):
        return count
    attempts = headers.get(ATTEMPTS_HEADER)
    previous = attempts if isinstance(attempts, int) else 0
    return previous + (1 if message.redelivered else 0)


def _error_reply(message: AbstractIncomingMessage, text: str) -> tuple[bytes, str, dict[str, Any]]:
    """A ``processor_error`` reply to ``message``: one error per item for a batch."""
    if message.content_type == BATCH_CONTENT_TYPE:
        try:
            count = len(decode_requests(message.body))
        except BatchFormatError:
            pass
        else:
            error = ItemError(ErrorCode.PROCESSOR_ERROR, text)
            return encode_replies([error] * count), BATCH_CONTENT_TYPE, {}
    return text.encode(), TEXT_CONTENT_TYPE, {ERROR_HEADER: ErrorCode.PROCESSOR_ERROR.value}
