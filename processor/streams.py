"""Streamed replies on AMQP: partial reply batches out, cancel messages in.

Contract (the wire format is :mod:`hopline.wire.batch`):

* :class:`MessageStreams` gathers the chunks of one request message's streams (and
  the early answers of its requests that end while others still run):
  everything emitted in one event-loop tick, or while the previous partial batch of
  the same message awaits its confirm, leaves as **one** partial reply batch (at
  most one in flight per message, so they reach ``reply_to`` in order).
  :meth:`MessageStreams.drain` waits until every chunk was confirmed; only then is
  the final reply published (after its partials, on the same channel).
* A publish that fails marks the streams broken: the worker then leaves the request
  unacked for redelivery (the requester sees a new run, see
  :data:`~hopline.wire.amqp.RUN_HEADER`) instead of replying after a gap.
* :class:`ControlQueue` consumes this processor's own control queue; a cancel
  message cancels the named streams of the message it names (their generators are
  closed at once, see :mod:`processor.calls`). Cancels for unknown messages are
  ignored (the stream already ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from hopline.wire.amqp import CONTROL_HEADER, CONTROL_QUEUE_PREFIX, RUN_HEADER
from hopline.wire.batch import (
    PARTIAL_CONTENT_TYPE,
    BatchFormatError,
    Chunk,
    ItemError,
    decode_cancel,
    encode_partials,
)

__all__ = ["ControlQueue", "MessageStreams"]

log = logging.getLogger(__name__)


class ControlQueue:
    """This processor's control queue and the streams that cancel messages may name."""

    def __init__(self) -> None:
        self.name = f"{CONTROL_QUEUE_PREFIX}{uuid.uuid4()}"
        self.cancels = 0
        self._streams: dict[str, MessageStreams] = {}
        self._queue: AbstractQueue | None = None

    async def start(self, channel: AbstractChannel) -> None:
        """Declare the (exclusive, auto-deleted) queue and consume it.

        Called on every new connection; after the first, under a fresh name (the
        exclusive queue of a lost connection may linger on its node for a while).
        """
        if self._queue is not None:
            self.name = f"{CONTROL_QUEUE_PREFIX}{uuid.uuid4()}"
        self._queue = await channel.declare_queue(self.name, exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_cancel, no_ack=True)

    def open(self, channel: AbstractChannel, correlation_id: str, reply_to: str) -> MessageStreams:
        """The streams of one request message, cancellable until :meth:`close`."""
        streams = MessageStreams(channel, correlation_id, reply_to, self.name)
        self._streams[correlation_id] = streams
        return streams

    def close(self, streams: MessageStreams) -> None:
        """Forget ``streams`` (its message was answered or abandoned)."""
        if self._streams.get(streams.correlation_id) is streams:
            del self._streams[streams.correlation_id]

    async def _on_cancel(self, message: AbstractIncomingMessage) -> None:
        streams = self._streams.get(message.correlation_id or "")
        if streams is None:
            return
        try:
            indexes = decode_cancel(message.body)
        except BatchFormatError as exc:
            log.warning("malformed cancel message ignored: %s", exc)
            return
        self.cancels += 1
        streams.cancel(indexes)


class MessageStreams:
    """The streamed replies of one request message. See the module docstring."""

    def __init__(
        self, channel: AbstractChannel, correlation_id: str, reply_to: str, control_queue: str
    ) -> None:
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.run = uuid.uuid4().hex
        self.sent = 0  # partial batches published
        self.broken = False
        self._channel = channel
        self._headers = {RUN_HEADER: self.run, CONTROL_HEADER: control_queue}
        self._pending: list[Chunk] = []
        self._counts: dict[int, int] = {}  # request index -> chunks emitted
        self._scheduled = False
        self._publishing: asyncio.Task[None] | None = None
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # processor.calls.Streams

    def emit(self, index: int, seq: int, data: str | bytes) -> None:
        """Queue one chunk; it leaves with the others of this tick."""
        self._pending.append(Chunk(index, seq, data))
        self._counts[index] = seq + 1
        self._queued()

    def answer(self, index: int, result: str | bytes | ItemError) -> None:
        """Queue request ``index``'s last chunk (or whole reply, or error): an early answer."""
        self._pending.append(Chunk(index, self._counts.get(index, 0), result, last=True))
        self._queued()

    def _queued(self) -> None:
        self._idle.clear()
        if not self._scheduled and self._publishing is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def register(self, index: int, task: asyncio.Task[Any]) -> None:
        """Request ``index``'s stream runs in ``task`` (cancelled by a cancel message)."""
        self._tasks[index] = task

    def unregister(self, index: int) -> None:
        """Request ``index``'s stream ended."""
        self._tasks.pop(index, None)

    # The rest

    def cancel(self, indexes: list[int]) -> None:
        """Cancel the streams of requests ``indexes`` (all of them when empty)."""
        targets = self._tasks.values() if not indexes else (self._tasks.get(i) for i in indexes)
        for task in list(targets):
            if task is not None:
                task.cancel()

    async def drain(self) -> bool:
        """Wait until every emitted chunk is confirmed; False if a publish failed."""
        while not self._idle.is_set():
            if self._publishing is None and not self._scheduled:
                self._flush()
            await self._idle.wait()
        return not self.broken

    def _flush(self) -> None:
        self._scheduled = False
        if self._publishing is not None or not self._pending:
            if not self._pending and self._publishing is None:
                self._idle.set()
            return
        body = encode_partials(self._pending)
        self._pending = []
        self._publishing = asyncio.get_running_loop().create_task(self._publish(body))

    async def _publish(self, body: bytes) -> None:
        message = aio_pika.Message(
            body,
            correlation_id=self.correlation_id,
            content_type=PARTIAL_CONTENT_TYPE,
            headers=self._headers,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        try:
            if not self.broken:
                await self._channel.default_exchange.publish(message, routing_key=self.reply_to)
                self.sent += 1
        except asyncio.CancelledError:
            self.broken = True
            raise
        except Exception as exc:
            log.warning("partial reply publish failed (%r); the stream is broken", exc)
            self.broken = True
        finally:
            self._publishing = None
            if self._pending and not self.broken:
                self._flush()
            else:
                self._pending.clear()
                self._idle.set()

    async def close(self) -> None:
        """Cancel a publish still in flight (the message is being abandoned)."""
        task = self._publishing
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
