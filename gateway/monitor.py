"""Queue depths and the batching decision, sampled in the background.

Passive AMQP declares give ready counts and consumers at once; they drive the
batching decision (``--batching auto``: batch while hopline processors consume the
batch queue; never with ``--max-queue-length``, see
:attr:`~gateway.config.GatewaySettings.batching_mode`) and the queue-depth gauges.
With ``settings.management_url`` the reported samples come from the management API
instead, adding unacknowledged counts, the queue type and its leader node
(``source == "management"``); when it fails, the AMQP samples are reported
(``source == "amqp"``).

Input queue health (:meth:`QueueMonitor.input_problem`): the input queues are
unhealthy while the latest declare failed (a classic queue whose node is down
cannot be reached from any other node) or while no consumer has been seen on them
for ``no_consumer_grace`` seconds.

:meth:`QueueMonitor.sample` does the I/O; what it decides from the counts is in
methods that take the samples and the time as arguments (:meth:`~QueueMonitor.record`,
:meth:`~QueueMonitor.observe`, :meth:`~QueueMonitor.unreachable`,
:meth:`~QueueMonitor.unattended`), tested without a broker in
``tests/gateway/test_monitor.py``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from gateway.config import GatewaySettings
from gateway.management import ManagementError, QueueSample, fetch_queues
from gateway.metrics import GatewayMetrics

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue

__all__ = ["QueueMonitor", "QueueSample"]

log = logging.getLogger(__name__)


class QueueMonitor:
    """The latest queue samples of one gateway and whether it batches.

    Attributes:
        queues: latest reported sample per queue name.
        sampled_at: unix time of the latest sample (None before the first).
        source: ``amqp`` or ``management``.
        batching_active: whether requests leave as batches right now.
        unattended_since: monotonic time since which no consumer listens on either
            input queue (None while one does, or before the first sample).
    """

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.queues: dict[str, QueueSample] = {}
        self.sampled_at: float | None = None
        self.source = "amqp"
        self.batching_active = settings.batching_mode == "on"
        self.unattended_since: float | None = None
        self.input_error: str | None = None

    def reachable(self) -> None:
        """The input queues were just declared successfully (on a new connection)."""
        self.input_error = None

    def unreachable(self, reason: object) -> None:
        """The latest declare of the input queues failed (``reason``): unhealthy until one works."""
        self.input_error = (
            f"input queue {self.settings.topology.input_queue!r} unreachable: {reason}"
        )

    def input_problem(self, now: float | None = None) -> str | None:
        """Why the input queues cannot serve requests at ``now`` (monotonic), or None."""
        if self.input_error is not None:
            return self.input_error
        grace = self.settings.no_consumer_grace
        if self.unattended(grace, now):
            return f"no processor has consumed the input queues for over {grace:g} s"
        return None

    async def sample(self, channel: AbstractChannel) -> None:
        """Declare the input queues (idempotent, same arguments) and record what they report.

        Raises:
            Exception: whatever the channel raises (the caller logs and retries).
        """
        topology = self.settings.topology
        try:
            plain, batch = await topology.declare(channel)
        except Exception as exc:
            self.unreachable(exc)
            raise
        self.reachable()
        samples = [_sample(plain), _sample(batch)]
        reported, source = samples, "amqp"
        if self.settings.management_url:
            try:
                reported = await fetch_queues(
                    self.settings.management_url,
                    self.settings.rabbitmq_url,
                    [s.name for s in samples],
                )
                source = "management"
            except ManagementError as exc:
                if self.source == "management":
                    log.warning("management API failed, using AMQP queue samples: %s", exc)
        self.record(reported, source, time.time())
        self.observe(samples[0], samples[1], time.monotonic())

    def record(self, samples: list[QueueSample], source: str, at: float) -> None:
        """Report ``samples`` (from ``source``, taken at unix time ``at``) as the latest."""
        self.queues = {s.name: s for s in samples}
        self.source = source
        self.sampled_at = at

    def observe(self, plain: QueueSample, batch: QueueSample, now: float) -> None:
        """Decide from the AMQP counts of the plain and batch input queues at ``now`` (monotonic).

        ``--batching auto``: batch while the batch queue has a consumer (``on`` and
        ``off``, or a queue length cap, never change). Unattended since ``now`` when
        neither queue has a consumer (the first such sample starts the clock); attended
        again as soon as one has. The depth gauges get the ready counts.
        """
        if self.settings.batching_mode == "auto":
            active = batch.consumers > 0
            if active != self.batching_active:
                log.info("batching %s", "active" if active else "inactive")
            self.batching_active = active
        if plain.consumers or batch.consumers:
            self.unattended_since = None
        elif self.unattended_since is None:
            self.unattended_since = now
        topology = self.settings.topology
        self.metrics.queue_depth(topology.input_queue).set(plain.ready)
        self.metrics.queue_depth(topology.batch_queue).set(batch.ready)

    def unattended(self, grace: float, now: float | None = None) -> bool:
        """Whether no consumer has listened on the input queues for ``grace`` seconds at
        ``now`` (monotonic; default: now). Never with ``grace`` 0."""
        since = self.unattended_since
        if grace <= 0 or since is None:
            return False
        return (time.monotonic() if now is None else now) - since >= grace


def _sample(queue: AbstractQueue) -> QueueSample:
    result = queue.declaration_result
    return QueueSample(queue.name, result.message_count or 0, result.consumer_count or 0)
