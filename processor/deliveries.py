"""The delivery limit: counting failed deliveries of a request, dead-lettering it.

See :mod:`hopline.wire.amqp` for the contract (quorum queues count by themselves,
classic queues through a re-published copy with :data:`ATTEMPTS_HEADER`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from hopline.wire.amqp import (
    ATTEMPTS_HEADER,
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
from hopline.wire.errors import ErrorCode
from hopline.wire.incoming import Incoming

__all__ = ["count_delivery", "error_reply", "failed_deliveries"]

log = logging.getLogger(__name__)

Reply = Callable[[Incoming, bytes, str, dict[str, Any] | None], Awaitable[bool]]


async def count_delivery(
    message: Incoming,
    deadline: int | None,
    topology: QueueTopology,
    channel: AbstractChannel,
    reply: Reply,
) -> bool:
    """Enforce the delivery limit; True when ``message`` was dealt with here.

    A request past the limit is rejected to the dead-letter queue after its
    client got ``processor_error``. A redelivered request on a classic queue
    is re-published with its failure count and the original acked; the copy
    is handled when it comes back.
    """
    limit = topology.delivery_limit
    assert limit is not None
    failed = failed_deliveries(message)
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
            body, content_type, headers = error_reply(message, text)
            if not await reply(message, body, content_type, headers):
                return True
        await message.reject(requeue=False)
        return True
    if not message.redelivered or DELIVERY_COUNT_HEADER in message.headers:
        return False  # a first delivery, or a queue that counts by itself
    remaining = None if deadline is None else (deadline - time.time() * 1000) / 1000
    if remaining is not None and remaining <= 0.001:  # expired meanwhile: nobody waits
        await message.ack()
        return True
    copy = aio_pika.Message(
        message.body,
        headers={**message.headers, ATTEMPTS_HEADER: failed},
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=remaining if remaining is not None else message.expiration,
        delivery_mode=message.delivery_mode,
    )
    try:
        await channel.default_exchange.publish(
            copy, routing_key=message.routing_key or topology.input_queue
        )
    except Exception:
        log.warning("could not re-publish a redelivered request", exc_info=True)
        with contextlib.suppress(Exception):
            await message.nack(requeue=True)
        return True
    await message.ack()
    return True


def failed_deliveries(message: Incoming) -> int:
    """Deliveries of ``message`` that ended without an ack, this one excluded."""
    headers = message.headers
    count = headers.get(DELIVERY_COUNT_HEADER)  # quorum queues count by themselves
    if isinstance(count, int):
        return count
    attempts = headers.get(ATTEMPTS_HEADER)
    previous = attempts if isinstance(attempts, int) else 0
    return previous + (1 if message.redelivered else 0)


def error_reply(message: Incoming, text: str) -> tuple[bytes, str, dict[str, Any]]:
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
