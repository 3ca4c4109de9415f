"""How requests leaving in one flush become AMQP messages (pure: no I/O).

While hopline processors consume the batch queue, requests leave as batch messages
(:mod:`hopline.wire.batch`) of at most ``max_batch`` requests and ``max_batch_bytes``
of payload (a larger request travels alone); otherwise each request is one plain AMQP
RPC message on the input queue, text or binary by its content type. Every message
asks for partial replies (:data:`~hopline.wire.amqp.STREAM_HEADER`) and carries the
deadline in :data:`~hopline.wire.amqp.DEADLINE_HEADER` (unix milliseconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pamqp.commands import Basic

from gateway.requests import Request
from hopline.wire.amqp import (
    BINARY_CONTENT_TYPE,
    DEADLINE_HEADER,
    STREAM_HEADER,
    TEXT_CONTENT_TYPE,
    QueueTopology,
)
from hopline.wire.batch import BATCH_CONTENT_TYPE
from hopline.wire.batch import encode_requests as encode_batch

__all__ = ["Packed", "Properties", "headers", "pack", "properties"]

Properties = Basic.Properties


@dataclass(frozen=True, slots=True)
class Packed:
    """Requests that travel in one message, its body, content type and queue."""

    requests: Sequence[Request]
    body: bytes
    content_type: str
    routing_key: str
    batched: bool


def pack(
    requests: Sequence[Request],
    topology: QueueTopology,
    *,
    batching: bool,
    max_batch: int,
    max_batch_bytes: int,
) -> list[Packed]:
    """The messages that carry ``requests``, in order."""
    if batching:
        return [
            Packed(
                chunk,
                encode_batch([r.payload for r in chunk]),
                BATCH_CONTENT_TYPE,
                topology.batch_queue,
                True,
            )
            for chunk in batches(requests, max_batch, max_batch_bytes)
        ]
    out = []
    for request in requests:
        payload = request.payload
        body = payload.encode() if isinstance(payload, str) else payload
        content_type = TEXT_CONTENT_TYPE if request.is_text else BINARY_CONTENT_TYPE
        out.append(Packed((request,), body, content_type, topology.input_queue, False))
    return out


def batches(requests: Sequence[Request], max_count: int, max_bytes: int) -> list[Sequence[Request]]:
    """Split ``requests`` into batches of at most ``max_count`` requests and ``max_bytes``.

    A request larger than ``max_bytes`` travels alone.
    """
    out: list[Sequence[Request]] = []
    current: list[Request] = []
    size = 0
    for request in requests:
        if current and (len(current) >= max_count or size + request.size > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(request)
        size += request.size
    if current:
        out.append(current)
    return out


def headers(deadline_unix_ms: int) -> dict[str, Any]:
    """The headers every request message of one flush carries."""
    return {DEADLINE_HEADER: deadline_unix_ms, STREAM_HEADER: 1}


def properties(
    corr: str,
    content_type: str,
    *,
    reply_to: str,
    expiration_ms: str,
    persistent: bool,
    message_headers: dict[str, Any],
) -> Properties:
    """pamqp properties of one request message.

    aiormq's properties directly: aio_pika.Message's attribute guard and copy cost
    about a sixth of a confirmed publish (bench/amqp_publish_cost.py). ``message_id``
    is set so that aiormq does not draw a random UUID for it on every publish.
    """
    return Properties(
        content_type=content_type,
        correlation_id=corr,
        delivery_mode=2 if persistent else 1,  # AMQP: 2 persistent, 1 transient
        expiration=expiration_ms,
        headers=message_headers,
        message_id=corr,
        reply_to=reply_to,
    )
