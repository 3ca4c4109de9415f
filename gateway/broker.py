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
* Requests submitted in the same event-loop tick are published together: as one
  batch message on the batch queue while hopline processors consume it, else as
  one plain AMQP RPC message each on the input queue. A batch closes at
  ``max_batch`` requests or ``max_batch_bytes`` of payload.
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
  and is full (see :meth:`Broker._refused`); otherwise (a quorum queue without a
  leader during a node loss) it is ``unavailable``.
* Streamed replies (:mod:`hopline.wire.batch`, :mod:`gateway.partials`): every
  message asks for partial replies (:data:`~hopline.wire.amqp.STREAM_HEADER`); their
  chunks go to the requests' ``on_chunk`` as they arrive (or are joined into the
  final reply). When a request whose message got partial replies is cancelled (its
  client went away), a cancel message goes to the processor's control queue, which
  closes the handler's generator.
* A payload is dropped as soon as its message is built; memory held per pending
  request is then its bookkeeping only (see docs and bench for the figure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError, PublishError
from pamqp.commands import Basic

from gateway.config import GatewaySettings
from gateway.memory import MemoryReturner
from gateway.metrics import GatewayMetrics
from gateway.monitor import QueueMonitor, QueueSample
from gateway.partials import final_results, partial_events
from gateway.replies import reply_results
from gateway.requests import Request, Result
from gateway.table import InFlight, RequestTable
from hopline.wire.amqp import (
    BINARY_CONTENT_TYPE,
    CONTROL_HEADER,
    DEADLINE_HEADER,
    RUN_HEADER,
    STREAM_HEADER,
    TEXT_CONTENT_TYPE,
)
from hopline.wire.batch import (
    BATCH_CONTENT_TYPE,
    CANCEL_CONTENT_TYPE,
    PARTIAL_CONTENT_TYPE,
    BatchFormatError,
    decode_partials,
    encode_cancel,
)
from hopline.wire.batch import encode_requests as encode_batch
from hopline.wire.connect import Link, redact_url
from hopline.wire.errors import ErrorCode, Failure
from hopline.wire.liveness import Watchdog, heartbeat_of, is_blocked

__all__ = ["Broker", "QueueSample"]

Properties = Basic.Properties

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

#: Seconds one queue-depth probe answers for every publish refused meanwhile.
DEPTH_PROBE_REUSE = 0.2


class Broker:
    """Owns the AMQP connections of one gateway process. See the module docstring."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.reply_queue_name = f"hopline.reply.{uuid.uuid4()}"
        self.table = RequestTable(
            settings.request_timeout,
            max_pending=settings.max_pending,
            max_pending_bytes=settings.max_pending_bytes,
        )
        self.monitor = QueueMonitor(settings, metrics)
        self._memory = MemoryReturner()
        self._flush_scheduled = False
        self._publishing = 0
        self._publish_link: Link | None = None
        self._consume_link: Link | None = None
        self._publish_channel: AbstractChannel | None = None
        self._monitor_channel: AbstractChannel | None = None
        self._reply_queue: AbstractQueue | None = None
        self._consume_channel: AbstractChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deadline_wakeup = asyncio.Event()
        self._closing = False
        self._idle: asyncio.Event | None = None
        self._watchdogs: list[Watchdog] = []
        self._depth_probes: dict[str, tuple[float, asyncio.Task[int | None]]] = {}

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

    # Lifecycle

    @property
    def _publish_conn(self) -> AbstractConnection | None:
        """The publish connection right now (None while reconnecting)."""
        return self._publish_link.connection if self._publish_link is not None else None

    @property
    def _consume_conn(self) -> AbstractConnection | None:
        """The consume connection right now (None while reconnecting)."""
        return self._consume_link.connection if self._consume_link is not None else None

    async def start(self, connect_timeout: float = 10.0) -> None:
        """Connect, declare the queues, start consuming replies.

        Raises:
            BrokerUnavailable: the broker did not accept a connection in time.
        """
        url = self.settings.rabbitmq_url
        settings = self.settings
        self._publish_link = Link(
            url,
            "hopline-gateway-publish",
            self._setup_publish,
            self._publish_lost,
            attempt_timeout=min(settings.connect_attempt_timeout, connect_timeout),
            order=settings.rabbitmq_order,
        )
        self._consume_link = Link(
            url,
            "hopline-gateway-consume",
            self._setup_consume,
            self._consume_lost,
            attempt_timeout=min(settings.connect_attempt_timeout, connect_timeout),
            order=settings.rabbitmq_order,
        )
        try:
            await asyncio.gather(
                self._publish_link.start(connect_timeout),
                self._consume_link.start(connect_timeout),
            )
        except BaseException:
            await self._publish_link.close()
            await self._consume_link.close()
            raise
        await self.sample_queues()
        self._spawn(self._monitor_loop())
        self._spawn(self._deadline_loop())
        heartbeat = heartbeat_of(url)
        if heartbeat > 0:  # notice a silent (partitioned) connection within ~2 heartbeats
            self._watchdogs = [
                Watchdog(self._publish_link, heartbeat, "publish"),
                Watchdog(self._consume_link, heartbeat, "consume"),
            ]
            for watchdog in self._watchdogs:
                self._spawn(watchdog.run())
        log.info(
            "connected to %s, reply queue %s, batching %s",
            redact_url(url),
            self.reply_queue_name,
            "active" if self.batching_active else "inactive",
        )

    async def _setup_publish(self, conn: AbstractConnection) -> None:
        """On every publish connection: one channel with publisher confirms."""
        self._publish_channel = await conn.channel(publisher_confirms=True, on_return_raises=True)

    async def _setup_consume(self, conn: AbstractConnection) -> None:
        """On every consume connection: the input queues, and a fresh reply queue consumed."""
        monitor_channel = await conn.channel()
        await self.settings.topology.declare(monitor_channel)
        consume_channel = await conn.channel()
        name = f"hopline.reply.{uuid.uuid4()}"
        queue = await consume_channel.declare_queue(name, exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply, no_ack=True)
        self._monitor_channel = monitor_channel
        self._consume_channel = consume_channel
        self._reply_queue = queue
        self.reply_queue_name = name
        self.monitor.reachable()

    def _consume_lost(self, exc: BaseException | None) -> None:
        """The reply path is gone: nobody will see a reply to what is pending now."""
        self._reply_queue = None
        self._consume_channel = None
        if self.table.pending:
            log.warning("reply path lost; failing %d pending requests", self.table.pending)
        self.fail_pending(
            "the connection to RabbitMQ was lost; the request may or may not have run"
        )

    def _publish_lost(self, exc: BaseException | None) -> None:
        """Unconfirmed publishes fail through their own exception; nothing else to do."""
        self._publish_channel = None

    def stop_accepting(self) -> None:
        """Refuse new requests (``unavailable``) from now on; pending ones still get replies."""
        self._closing = True

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
        for link in (self._publish_link, self._consume_link):
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.close()

    @property
    def connected(self) -> bool:
        """Whether requests can go out and replies come back right now (see module docstring)."""
        # On every submit: plain checks, no generators (about 1 us less per request).
        publish, consume = self._publish_link, self._consume_link
        if publish is None or consume is None:
            return False
        if not (publish.ready.is_set() and consume.ready.is_set()):
            return False
        channel, replies = self._publish_channel, self._consume_channel
        if channel is None or replies is None or channel.is_closed or replies.is_closed:
            return False
        watchdogs = self._watchdogs  # none, or the publish and the consume connection's
        return not watchdogs or not (watchdogs[0].silent or watchdogs[1].silent)

    @property
    def broker_address(self) -> str | None:
        """The node the reply path is connected to right now (redacted URL), if any."""
        return self._consume_link.url if self._consume_link is not None else None

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
        if self._closing or not self.connected:
            reason = "gateway is shutting down" if self._closing else "broker connection is down"
            self._finish(request, Failure(ErrorCode.UNAVAILABLE, reason))
            return
        if self.monitor.unattended(self.settings.no_consumer_grace):
            queue = self.settings.topology.input_queue
            self._finish(request, Failure(ErrorCode.UNAVAILABLE, f"no processor consumes {queue}"))
            return
        if is_blocked(self._publish_conn):
            self._finish(request, Failure(ErrorCode.BUSY, "broker blocks publishing (alarm)"))
            return
        self.table.enqueue(request, asyncio.get_running_loop().time())
        self._schedule_flush()

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
        channel = self._publish_channel
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
        timeout = self.settings.request_timeout
        delivery_mode = 2 if self.settings.persistent else 1  # AMQP: 2 persistent, 1 transient
        headers = {DEADLINE_HEADER: int((time.time() + timeout) * 1000), STREAM_HEADER: 1}
        expiration = str(int(timeout * 1000))
        messages: list[Outgoing] = []

        def message(entry: InFlight, body: bytes, content_type: str) -> tuple[bytes, Properties]:
            # aiormq's properties directly: aio_pika.Message's attribute guard and copy cost
            # about a sixth of a confirmed publish (bench/amqp_publish_cost.py). message_id
            # is set so that aiormq does not draw a random UUID for it on every publish.
            return body, Properties(
                content_type=content_type,
                correlation_id=entry.corr,
                delivery_mode=delivery_mode,
                expiration=expiration,
                headers=headers,
                message_id=entry.corr,
                reply_to=self.reply_queue_name,
            )

        if self.batching_active:
            batch_queue = self.settings.topology.batch_queue
            for chunk in _batches(requests, self.settings.max_batch, self.settings.max_batch_bytes):
                entry = self.table.register(chunk, deadline, batched=True)
                body = encode_batch([r.payload for r in chunk])
                messages.append((entry, *message(entry, body, BATCH_CONTENT_TYPE), batch_queue))
            self.metrics.batch_size.observe(len(requests))
        else:
            input_queue = self.settings.topology.input_queue
            for request in requests:
                entry = self.table.register([request], deadline, batched=False)
                payload = request.payload
                body = payload.encode() if isinstance(payload, str) else payload
                content_type = TEXT_CONTENT_TYPE if request.is_text else BINARY_CONTENT_TYPE
                messages.append((entry, *message(entry, body, content_type), input_queue))
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
        channel = self._publish_channel
        if channel is None or channel.is_closed:
            self._fail(entry, ErrorCode.UNAVAILABLE, "broker connection is down")
            return
        remaining = entry.deadline - asyncio.get_running_loop().time()
        try:
            if channel.is_closed:
                raise ChannelInvalidStateError("publish channel is closed")
            underlay = await channel.get_underlay_channel()
            async with asyncio.timeout(remaining):
                # wait=False: the confirm is what counts; no extra task switch to wait
                # for the frame to reach the socket first. Mandatory: an unroutable
                # request raises PublishError (the channel has on_return_raises).
                await underlay.basic_publish(
                    body,
                    exchange="",
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                    wait=False,
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
        """End a refused (nacked) publish: ``busy`` if the queue is at its limit, else not.

        RabbitMQ's nack carries no reason. A queue with a byte limit is taken as full
        (its bytes are not sampled); with a length limit, the queue's depth right now
        decides (at least half full: busy); without a limit, or when the depth cannot
        be read, the queue was not available (a quorum queue electing a leader).
        """
        topology = self.settings.topology
        full = topology.max_bytes is not None
        if not full and topology.max_length is not None:
            depth = await self._depth(queue)
            full = depth is not None and depth * 2 >= topology.max_length
        if full:
            self._fail(entry, ErrorCode.BUSY, "the broker refused the request (queue full)")
        else:
            self._fail(
                entry,
                ErrorCode.UNAVAILABLE,
                "the broker refused the request (queue not available); it was not queued",
            )

    async def _depth(self, queue: str) -> int | None:
        """Ready messages in ``queue`` now (one passive declare shared by a burst of callers)."""
        loop = asyncio.get_running_loop()
        cached = self._depth_probes.get(queue)
        if cached is None or loop.time() - cached[0] > DEPTH_PROBE_REUSE:
            cached = (loop.time(), loop.create_task(self._probe_depth(queue)))
            self._depth_probes[queue] = cached
        return await asyncio.shield(cached[1])

    async def _probe_depth(self, queue: str) -> int | None:
        conn = self._consume_conn
        if conn is None or conn.is_closed:
            return None
        try:
            async with asyncio.timeout(1.0):
                channel = await conn.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
        except Exception:
            return None
        return declared.declaration_result.message_count or 0

    # Replies

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        self._on_reply_sync(message)

    def _on_reply_sync(self, message: AbstractIncomingMessage) -> None:
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

    def _on_partial(self, message: AbstractIncomingMessage) -> None:
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
        channel = self._monitor_channel
        if channel is None or channel.is_closed:
            conn = self._consume_conn
            if conn is None or conn.is_closed:
                return
            channel = self._monitor_channel = await conn.channel()
        await self.monitor.sample(channel)


def _header(message: AbstractIncomingMessage, name: str) -> str | None:
    value = (message.headers or {}).get(name)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _batches(requests: list[Request], max_count: int, max_bytes: int) -> list[list[Request]]:
    """Split ``requests`` into batches of at most ``max_count`` requests and ``max_bytes``.

    A request larger than ``max_bytes`` travels alone.
    """
    batches: list[list[Request]] = []
    current: list[Request] = []
    size = 0
    for request in requests:
        if current and (len(current) >= max_count or size + request.size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(request)
        size += request.size
    if current:
        batches.append(current)
    return batches
