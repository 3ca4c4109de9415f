"""What an AMQP reply means for the requests it answers (pure: no I/O).

A reply to a batch message must be a reply batch holding one item per request,
in order (:mod:`hopline.wire.batch`); a reply to a plain RPC request is its body,
or an error when it carries :data:`~hopline.wire.amqp.ERROR_HEADER`; a batch
answered by one such error (a processor that could not read the batch) gives that
error to every request of it. Each reply gets the type of its request (text in,
text out; binary in, binary out). Anything else unusable becomes
``processor_error`` for every request of the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.requests import Request, Result
from gateway.table import InFlight
from hopline.wire.amqp import ERROR_HEADER
from hopline.wire.batch import BATCH_CONTENT_TYPE, BatchFormatError, ItemError, decode_replies
from hopline.wire.errors import ErrorCode, Failure, failure_from

__all__ = ["reply_results"]


def reply_results(
    entry: InFlight, content_type: str | None, headers: Mapping[str, Any] | None, body: bytes
) -> list[Result]:
    """One result per request of ``entry``, in order, from the reply message's parts."""
    if entry.batched:
        if content_type != BATCH_CONTENT_TYPE:
            error_code = (headers or {}).get(ERROR_HEADER)
            if error_code is not None:  # one error for the whole message (e.g. unreadable)
                return [_failure(error_code, body)] * len(entry.requests)
            return _all(entry, "processor did not answer a batch")
        try:
            replies = decode_replies(body, len(entry.requests))
        except BatchFormatError as exc:
            return _all(entry, f"malformed reply batch: {exc}")
        return [
            failure_from(reply.code, reply.message)
            if isinstance(reply, ItemError)
            else as_type_of(request, reply)
            for request, reply in zip(entry.requests, replies, strict=True)
        ]
    error_code = (headers or {}).get(ERROR_HEADER)
    if error_code is not None:
        return [_failure(error_code, body)]
    return [as_type_of(entry.requests[0], body)]


def _failure(error_code: bytes | str, body: bytes) -> Failure:
    code = error_code.decode() if isinstance(error_code, bytes) else str(error_code)
    return failure_from(code, body.decode(errors="replace"))


def _all(entry: InFlight, message: str) -> list[Result]:
    failure = Failure(ErrorCode.PROCESSOR_ERROR, message)
    return [failure] * len(entry.requests)


def as_type_of(request: Request, reply: str | bytes) -> Result:
    """Give the reply the type of its request: text in, text out; binary in, binary out."""
    if request.is_text:
        if isinstance(reply, str):
            return reply
        try:
            return reply.decode()
        except UnicodeDecodeError:
            return Failure(ErrorCode.PROCESSOR_ERROR, "reply to a text request is not UTF-8")
    return reply if isinstance(reply, bytes) else reply.encode()
