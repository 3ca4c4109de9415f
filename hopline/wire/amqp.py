"""Queue names and declarations shared by the gateway and the processor.

Both sides declare the same queues with the same arguments (RabbitMQ refuses a
redeclaration with different arguments), so the arguments live here only.

* ``<input_queue>``: durable, one plain AMQP RPC request per message. Any RPC
  server that honours ``reply_to`` and ``correlation_id`` can consume it.
* ``<input_queue>.batch``: durable, hopline request batches (see
  :mod:`hopline.wire.batch`). Only hopline processors consume it; the gateway sends
  batches there only while it has consumers (``--batching auto``), and never when
  the queues have a length cap (``max_length``, which counts messages).
* ``<input_queue>.dead``: where a request that failed too often is dead-lettered,
  when a delivery limit is set. Dead-lettered messages keep their body,
  ``reply_to``, ``correlation_id`` and headers (RabbitMQ adds ``x-death``), so
  they can be inspected and replayed.

Control queues: every hopline processor also consumes an exclusive, auto-deleted
``hopline.control.<uuid>`` queue of its own, named in the :data:`CONTROL_HEADER` of
its partial replies; a requester publishes cancel messages there (see
:mod:`hopline.wire.batch`) when the client of a streamed reply went away.

Delivery limit: a request whose processor dies (or loses its connection) before
acking it is redelivered. Quorum queues count deliveries themselves
(``x-delivery-count`` header, ``x-delivery-limit`` argument); for classic queues
the processor keeps the count in the :data:`ATTEMPTS_HEADER` of a re-published
copy. Either way the processor dead-letters the request on the delivery after
``delivery_limit`` failed ones and replies ``processor_error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hopline.wire.defaults import DEFAULT_INPUT_QUEUE

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue

__all__ = [
    "ATTEMPTS_HEADER",
    "BINARY_CONTENT_TYPE",
    "CONTROL_HEADER",
    "CONTROL_QUEUE_PREFIX",
    "DEADLINE_HEADER",
    "DELIVERY_COUNT_HEADER",
    "ERROR_HEADER",
    "RUN_HEADER",
    "STREAM_HEADER",
    "TEXT_CONTENT_TYPE",
    "QueueTopology",
]

# Message conventions shared by the gateway and the processor.
ERROR_HEADER = "x-hopline-error"  # on a plain reply: the error code; the body is the message
# On a request: unix time in integer milliseconds after which nobody waits for the reply
# (an integer: AMQP tables carry Python floats as 32-bit floats, 128 s coarse today).
DEADLINE_HEADER = "x-hopline-deadline-ms"
# On a request copy re-published by a processor (classic queues): deliveries that failed.
ATTEMPTS_HEADER = "x-hopline-attempts"
# Set by quorum queues on a redelivered message: deliveries returned without an ack.
DELIVERY_COUNT_HEADER = "x-delivery-count"
# Streamed replies (see hopline.wire.batch): on a request, any true value asks for partial
# reply batches; without it the processor joins the chunks into one ordinary reply.
STREAM_HEADER = "x-hopline-stream"
# On partial reply batches: the processor's control queue, where cancel messages go.
CONTROL_HEADER = "x-hopline-control"
# On partial reply batches and the final reply after them: one id per handling of a message.
RUN_HEADER = "x-hopline-run"
# Name prefix of a processor's own control queue (the rest is a uuid).
CONTROL_QUEUE_PREFIX = "hopline.control."
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
BINARY_CONTENT_TYPE = "application/octet-stream"

QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True, slots=True)
class QueueTopology:
    """How the input queues are named and declared.

    Attributes:
        input_queue: name of the plain request queue (the batch queue is derived).
        queue_type: ``classic`` (default) or ``quorum`` for clustered brokers.
        max_length: optional ``x-max-length``; with it the broker rejects
            publishes past the limit (``x-overflow=reject-publish``), which the
            gateway reports to the client as ``busy``. The broker counts AMQP
            messages (ready ones, per queue); a gateway given a length cap
            publishes every request as its own plain message (no batches), so it
            is a cap on queued requests.
        max_bytes: optional ``x-max-length-bytes``: the most message body bytes
            the queue holds, whatever the batching; past it, ``busy`` as above.
            One tenant filling it cannot trip the broker's memory alarm for all.
        delivery_limit: optional number of failed deliveries (processor crashed
            or disconnected before acking) after which a request is dead-lettered
            to ``<input_queue>.dead`` and its client gets ``processor_error``; the
            handler runs at most this many times per request. The processor
            enforces it for both queue types; quorum queues also get
            ``x-delivery-limit`` as a broker-side backstop.
    """

    input_queue: str = DEFAULT_INPUT_QUEUE
    queue_type: QueueType = "classic"
    max_length: int | None = None
    max_bytes: int | None = None
    delivery_limit: int | None = None

    @property
    def batch_queue(self) -> str:
        """Name of the queue that carries request batches."""
        return f"{self.input_queue}.batch"

    @property
    def dead_letter_queue(self) -> str:
        """Name of the queue that receives dead-lettered requests."""
        return f"{self.input_queue}.dead"

    def arguments(self) -> dict[str, Any]:
        """The ``x-`` arguments of both input queues."""
        args: dict[str, Any] = {}
        if self.queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        if self.max_bytes is not None:
            args["x-max-length-bytes"] = self.max_bytes
        if self.max_length is not None or self.max_bytes is not None:
            args["x-overflow"] = "reject-publish"
        if self.delivery_limit is not None:
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = self.dead_letter_queue
            if self.queue_type == "quorum":
                args["x-delivery-limit"] = self.delivery_limit
        return args

    async def declare(self, channel: AbstractChannel) -> tuple[AbstractQueue, AbstractQueue]:
        """Declare the input queue, the batch queue (and the dead-letter queue).

        Returns:
            The declared ``(input_queue, batch_queue)``; their
            ``declaration_result`` carries message and consumer counts.
        """
        args = self.arguments()
        if self.delivery_limit is not None:
            await channel.declare_queue(self.dead_letter_queue, durable=True)
        plain = await channel.declare_queue(self.input_queue, durable=True, arguments=args)
        batch = await channel.declare_queue(self.batch_queue, durable=True, arguments=args)
        return plain, batch
