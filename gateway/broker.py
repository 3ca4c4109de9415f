"""The gateway's AMQP side: a thin adapter between the request table and RabbitMQ.

Contract:

* :meth:`Broker.submit` never blocks and never raises: every submitted
  :class:`~gateway.requests.Request` is ended exactly once, with its reply or a
  :class:`~hopline.wire.errors.Failure` (``busy`` when a gateway cap, a full queue or
  a broker alarm refuses it, ``unavailable`` when the broker is down or refuses the
  publish, ``timeout`` at the deadline, ``processor_error`` for an unusable reply),
  unless its owner cancels it first with :meth:`Broker.cancel`. The bookkeeping
  (caps, correlation ids, deadlines, matching) is the pure
  :class:`~gateway.table.RequestTable`; queue depths and the batching decision are
  :class:`~gateway.monitor.QueueMonitor`'s.
* Whether requests can be published at all (shutting down, broker or reply path
  down, no processor past the grace, a broker alarm) is checked again whenever the
  loop's clock has moved (uvloop's counts whole milliseconds; asyncio's: every
  request), on every reply-path loss and on :meth:`Broker.stop_accepting`. A request
  that slips through in the millisecond a link drops fails at its publish, with the
  same ``unavailable``. Made for every request, the checks cost about 5 % of the
  gateway's CPU in a closed loop (``bench/stalls.py --mode closed --compare``).
* Requests submitted in the same event-loop tick are published together: as one
  batch message on the batch queue while hopline processors consume it, else as
  one plain AMQP RPC message each on the input queue. A batch closes at
  ``max_batch`` requests or ``max_batch_bytes`` of payload. With a queue length
  cap (``--max-queue-length``) requests never travel in batches, so the broker's
  cap counts requests (:attr:`~gateway.config.GatewaySettings.batching_mode`).
* Every message carries a fresh UUID correlation id, ``reply_to`` = this gateway's
  own exclusive reply queue, and ``expiration`` = the request timeout. Replies with
  an unknown correlation id (late, duplicate, foreign) are dropped and counted.
* Publishing and consuming use separate connections, so a broker that blocks
  publishers (memory alarm) still delivers the replies already queued. Each is a
  :class:`~hopline.wire.connect.Link` over every broker address (a cluster): on
  loss it reconnects to another node, and everything is declared anew there.
* Ready means ready: :attr:`Broker.connected` (and so ``/health``, and whether a
  request is published at all) holds only while the publish channel is open, the
  reply queue is declared and consumed, and no watchdog finds a connection silent.
* Each consume connection gets a fresh reply queue name (an exclusive queue of a
  lost connection may linger on its node, and a reply sent there is lost). When
  the reply path is lost, every request waiting on it fails at once with
  ``unavailable`` ("may or may not have run"): nothing waits for its deadline.
* A publish the broker refuses (nack) is ``busy`` only when the queue has a limit
  and is full (see :mod:`gateway.refusal`); otherwise (a quorum queue without a
  leader during a node loss) it is ``unavailable``.
* Streamed replies (:mod:`hopline.wire.batch`, :mod:`gateway.partials`): every
  message asks for partial replies (:data:`~hopline.wire.amqp.STREAM_HEADER`); their
  chunks go to the requests' ``on_chunk`` as they arrive (or are joined into the
  final reply). When a request whose message got partial replies is cancelled (its
  client went away), a cancel message goes to the processor's control queue, which
  closes the handler's generator.
* A payload is dropped as soon as its message is built; memory held per pending
  request is then its bookkeeping only: about 450 bytes of resident memory for a
  request in a batch, 800-3,100 bytes for one travelling as its own message (measured
  with ``bench/abuse_memory.py pending``; docs/hardening.md).

This module is over the ~400 lines the project aims at, on purpose: what can live
apart already does (links, outgoing, refusal, monitor, table, replies, partials);
what is left is the plumbing that ties the table to the links (submit, flush,
publish, confirm or nack; reply, match, finish; deadlines), read best in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError, PublishError

from gateway.config import GatewaySettings
from gateway.links import BrokerLinks
from gateway.memory import MemoryReturner
from gateway.metrics import GatewayMetrics
from gateway.monitor import QueueMonitor, QueueSample
from gateway.outgoing import Properties, headers, pack, properties
from gateway.partials import final_results, partial_events
from gateway.refusal import RefusalJudge
from gateway.replies import reply_results
from gateway.requests import Request, Result
from gateway.table import InFlight, RequestTable
from hopline.wire.amqp import (
    CONTROL_HEADER,
    RUN_HEADER,
)
from hopline.wire.batch import (
    CANCEL_CONTENT_TYPE,
    PARTIAL_CONTENT_TYPE,
    BatchFormatError,
    decode_partials,
    encode_cancel,
)
from hopline.wire.connect import redact_url
from hopline.wire.errors import ErrorCode, Failure
from hopline.wire.incoming import Incoming
from hopline.wire.liveness import is_blocked
from hopline.wire.publish import publish

__all__ = ["Broker", "QueueSample"]


log = logging.getLogger(__name__)


# Group commit: while a publish awaits its confirm, new requests gather in the outbox
# and leave together in the next batch: fewer, larger AMQP messages under load, no
# added delay when idle. One publish in flight gave 18 requests per message instead
# of 12 with two, and 11.8x the reference design's throughput instead of 9.6x
# (bench/run.py --quick, same machine). Capping the wait at 1 ms instead was worse
# under load (7.7 per message): confirms slow down when the CPU is saturated, so the
# cap fired constantly. The price: on a slow broker link a request may wait one
# extra publish round trip before it leaves (still bounded by its deadline).
MAX_PUBLISHES_IN_FLIGHT = 1

Outgoing = tuple[InFlight, bytes, Properties, str]  # entry, body, properties, routing key


class Broker:
    """Moves the requests of one gateway process over its AMQP links (module docstring)."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.table = RequestTable(
            settings.request_timeout,
            max_pending=settings.max_pending,
            max_pending_bytes=settings.max_pending_bytes,
        )
        self.monitor = QueueMonitor(settings, metrics)
        self._memory = MemoryReturner()
        self._flush_scheduled = False
        self._publishing = 0
        self.links = BrokerLinks(settings, self.monitor, self._on_reply, self._reply_path_lost)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deadline_wakeup = asyncio.Event()
        self._closing = False
        # Why nothing can be published (None: it can), as of the loop time checked at.
        self._refusal: Failure | None = None
        self._refusal_checked_at = -1.0
        self._idle: asyncio.Event | None = None
        self._refusals = RefusalJudge(settings.topology, lambda: self.links.consume_conn)

    # Views for /health, /stats and tests

    @property
    def pending_requests(self) -> int:
        """Requests submitted and not ended yet."""
        return self.table.pending

    @property
    def batching_active(self) -> bool:
        """Whether requests leave as batch messages right now."""
        return self.monitor.batching_active

    @property
    def queues(self) -> dict[str, QueueSample]:
        """Latest queue samples by name."""
        return self.monitor.queues

    @property
    def queue_source(self) -> str:
        """Where the queue samples come from: ``amqp`` or ``management``."""
        return self.monitor.source

    @property
    def queues_sampled_at(self) -> float | None:
        """Unix time of the latest queue sample."""
        return self.monitor.sampled_at

    @property
    def reply_queue_name(self) -> str:
        """This gateway's reply queue right now (a fresh one per consume connection)."""
        return self.links.reply_queue_name

    @property
    def connected(self) -> bool:
        """Whether requests can go out and replies come back right now (gateway.links)."""
        return self.links.connected

    @property
    def broker_address(self) -> str | None:
        """The node the reply path is connected to right now (redacted URL), if any."""
        return self.links.broker_address

    @property
    def _publish_conn(self) -> AbstractConnection | None:
        return self.links.publish_conn

    # Lifecycle

    async def start(self, connect_timeout: float = 10.0) -> None:
        """Connect, declare the queues, start consuming replies.

        Raises:
            BrokerUnavailable: the broker did not accept a connection in time.
        """
        await self.links.start(connect_timeout, self._spawn)
        await self.sample_queues()
        self._spawn(self._monitor_loop())
        self._spawn(self._deadline_loop())
        log.info(
            "connected to %s, reply queue %s, batching %s",
            redact_url(self.settings.rabbitmq_url),
            self.reply_queue_name,
            "active" if self.batching_active else "inactive",
        )
        if self.settings.batching_mode != self.settings.batching:
            log.info("batching off: --max-queue-length counts requests, one message each")

    def _reply_path_lost(self) -> None:
        """The reply path is gone: nobody will see a reply to what is pending now."""
        self._refusal_checked_at = -1.0
        if self.table.pending:
            log.warning("reply path lost; failing %d pending requests", self.table.pending)
        self.fail_pending(
            "the connection to RabbitMQ was lost; the request may or may not have run"
        )

    def stop_accepting(self) -> None:
        """Refuse new requests (``unavailable``) from now on; pending ones still get replies."""
        self._closing = True
        self._refusal_checked_at = -1.0

    def fail_pending(self, message: str) -> None:
        """End every pending request now with ``unavailable`` and ``message``."""
        failure = Failure(ErrorCode.UNAVAILABLE, message)
        for request in list(self.table.drain()):
            self._finish(request, failure)

    async def close(self) -> None:
        """Fail what is still pending with ``unavailable`` and close both connections."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        self.fail_pending("gateway is shutting down")
        await self.links.close()

    async def wait_idle(self) -> None:
        """Return once no request is pending."""
        if self.table.pending == 0:
            return
        self._idle = asyncio.Event()
        await self._idle.wait()

    # Requests

    def submit(self, request: Request) -> None:
        """Publish ``request`` soon (see the module docstring for the contract)."""
        self.metrics.requests.inc()
        refusal = self.table.admit(request)
        if refusal is not None:
            self.metrics.errors(refusal.code).inc()
            request.resolve(refusal)
            return
        now = asyncio.get_running_loop().time()
        if now != self._refusal_checked_at:
            self._refusal_checked_at = now
            self._refusal = self._refusal_now()
        if self._refusal is not None:
            self._finish(request, self._refusal)
            return
        self.table.enqueue(request, now)
        self._schedule_flush()

    def _refusal_now(self) -> Failure | None:
        """Why no request can be published right now, or None (see the module docstring)."""
        if self._closing or not self.connected:
            reason = "gateway is shutting down" if self._closing else "broker connection is down"
            return Failure(ErrorCode.UNAVAILABLE, reason)
        if self.monitor.unattended(self.settings.no_consumer_grace):
            queue = self.settings.topology.input_queue
            return Failure(ErrorCode.UNAVAILABLE, f"no processor consumes {queue}")
        if is_blocked(self._publish_conn):
            return Failure(ErrorCode.BUSY, "broker blocks publishing (alarm)")
        return None

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._publishing < MAX_PUBLISHES_IN_FLIGHT:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def cancel(self, request: Request) -> None:
        """Forget ``request`` without answering it (its client is gone).

        A request of a message that streams tells the processor (a cancel message).
        """
        entry: InFlight | None = request.entry
        if self.table.cancel(request):
            self._request_ended()
            if entry is not None and entry.control is not None:
                index = next(i for i, r in enumerate(entry.requests) if r is request)
                self._spawn(self._send_cancel(entry.control, entry.corr, index))

    async def _send_cancel(self, control: str, corr: str, index: int) -> None:
        channel = self.links.publish_channel
        if channel is None:
            return
        message = aio_pika.Message(
            encode_cancel([index]), correlation_id=corr, content_type=CANCEL_CONTENT_TYPE
        )
        try:
            await channel.default_exchange.publish(message, routing_key=control)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the processor (and its control queue) is gone
            log.debug("cancel to %s not delivered: %r", control, exc)

    def _finish(self, request: Request, result: Result) -> None:
        if self.table.finish(request, result):
            self._request_ended()
            if isinstance(result, Failure):
                self.metrics.errors(result.code).inc()
            else:
                self.metrics.replies.inc()

    def _request_ended(self) -> None:
        if self._idle is not None and self.table.pending == 0:
            self._idle.set()

    def _fail(self, entry: InFlight, code: ErrorCode, message: str) -> None:
        self.table.forget(entry)
        failure = Failure(code, message)
        for request in entry.requests:
            self._finish(request, failure)

    def _flush(self) -> None:
        self._flush_scheduled = False
        requests, deadline = self.table.take_outbox()
        if not requests:
            return
        settings = self.settings
        timeout = settings.request_timeout
        message_headers = headers(int((time.time() + timeout) * 1000))
        expiration = str(int(timeout * 1000))
        packed = pack(
            requests,
            settings.topology,
            batching=self.batching_active,
            max_batch=settings.max_batch,
            max_batch_bytes=settings.max_batch_bytes,
        )
        messages: list[Outgoing] = []
        for message in packed:
            entry = self.table.register(message.requests, deadline, batched=message.batched)
            props = properties(
                entry.corr,
                message.content_type,
                reply_to=self.reply_queue_name,
                expiration_ms=expiration,
                persistent=settings.persistent,
                message_headers=message_headers,
            )
            messages.append((entry, message.body, props, message.routing_key))
        if self.batching_active:
            self.metrics.batch_size.observe(len(requests))
        for request in requests:
            request.published()
        self._publishing += 1
        self._spawn(self._publish_all(messages))
        if self.table.in_flight == len(messages):  # the deadline loop was idle
            self._deadline_wakeup.set()

    async def _publish_all(self, messages: list[Outgoing]) -> None:
        try:
            if len(messages) == 1:
                await self._publish(*messages[0])
            else:
                await asyncio.gather(*(self._publish(*m) for m in messages))
        finally:
            self._publishing -= 1
            if self.table.outbox_size:
                self._schedule_flush()

    async def _publish(
        self, entry: InFlight, body: bytes, properties: Properties, routing_key: str
    ) -> None:
        channel = self.links.publish_channel
        if channel is None or channel.is_closed:
            self._fail(entry, ErrorCode.UNAVAILABLE, "broker connection is down")
            return
        remaining = entry.deadline - asyncio.get_running_loop().time()
        try:
            if channel.is_closed:
                raise ChannelInvalidStateError("publish channel is closed")
            underlay = await channel.get_underlay_channel()
            async with asyncio.timeout(remaining):
                # Only the confirm is awaited (hopline.wire.publish), not the socket
                # write. Mandatory: an unroutable request raises PublishError (the
                # channel has on_return_raises).
                await publish(
                    underlay, body, routing_key=routing_key, properties=properties, mandatory=True
                )
        except PublishError:
            self._fail(entry, ErrorCode.UNAVAILABLE, f"no queue {routing_key!r} to route to")
        except DeliveryError:
            self._spawn(self._refused(entry, routing_key))
        except TimeoutError:
            self._fail(entry, ErrorCode.TIMEOUT, "publish not confirmed before the deadline")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("publish failed: %r", exc)
            self._fail(entry, ErrorCode.UNAVAILABLE, "broker connection is down")

    async def _refused(self, entry: InFlight, queue: str) -> None:
        """End a refused (nacked) publish: ``busy`` or ``unavailable`` (gateway.refusal)."""
        failure = await self._refusals.failure(queue)
        self._fail(entry, failure.code, failure.message)

    # Replies

    def _on_reply(self, message: Incoming) -> None:
        if message.content_type == PARTIAL_CONTENT_TYPE:
            self._on_partial(message)
            return
        entry = self.table.match(message.correlation_id)
        if entry is None:
            self.metrics.dropped_replies.inc()
            return
        results = reply_results(entry, message.content_type, message.headers, message.body)
        if entry.streams:
            results = final_results(entry, results, _header(message, RUN_HEADER))
        for request, result in zip(entry.requests, results, strict=True):
            self._finish(request, result)

    def _on_partial(self, message: Incoming) -> None:
        """Chunks of streamed replies: to their owners now; the entry stays pending."""
        entry = self.table.peek(message.correlation_id)
        if entry is None:
            self.metrics.dropped_replies.inc()
            return
        entry.control = _header(message, CONTROL_HEADER) or entry.control
        try:
            chunks = decode_partials(message.body)
        except BatchFormatError as exc:
            self._fail(entry, ErrorCode.PROCESSOR_ERROR, f"malformed partial reply: {exc}")
            return
        for request, result, ends in partial_events(entry, _header(message, RUN_HEADER), chunks):
            if ends:
                self._finish(request, result)
            elif request.on_chunk is not None:
                request.on_chunk(request, result)  # type: ignore[arg-type]

    # Background work

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deadline_loop(self) -> None:
        """Fail in-flight messages whose deadline passed (the table keeps them in order)."""
        loop = asyncio.get_running_loop()
        table = self.table
        while True:
            for entry in table.expired(loop.time()):
                timeout = self.settings.request_timeout
                self._fail(entry, ErrorCode.TIMEOUT, f"no reply within {timeout:g} s")
            self._deadline_wakeup.clear()
            deadline = table.next_deadline()
            if deadline is None:
                await self._deadline_wakeup.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    await self._deadline_wakeup.wait()

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            self._memory.maybe_return(self.table.pending)
            try:
                await self.sample_queues()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("queue sampling failed: %r", exc)

    async def sample_queues(self) -> None:
        """Sample the input queues now (see :class:`~gateway.monitor.QueueMonitor`).

        A failed sample (the queue is unreachable: a classic queue whose node is down)
        closes the channel; the next sample opens a new one on the consume connection.
        """
        if not self.connected:
            return
        channel = await self.links.monitor_channel()
        if channel is None:
            return
        await self.monitor.sample(channel)


def _header(message: Incoming, name: str) -> str | None:
    value = message.headers.get(name)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
