"""Turning one request message into its reply: decode, call the handler, encode.

Contract (the worker around it consumes, publishes and acks):

* A plain message is one request: text unless its content type says binary (or it
  is not UTF-8). A batch message (:mod:`hopline.wire.batch`) is many; a malformed
  one is answered ``bad_request`` as a whole and counted in :attr:`malformed`.
* An inline handler runs the requests one after another, checking the deadline
  before each; any other runs them concurrently through
  :meth:`~processor.calls.Caller.run` (a slot each, the deadline checked when the
  slot is free). A request of a batch that ends while others still run is answered
  at once through the message's :class:`~processor.streams.MessageStreams`, when
  the requester asked for partial replies (an early answer).
* The result is ``(body, content_type, headers)`` of the final reply, or None when
  the deadline passed before every request ran (nobody waits for the reply).
* Handlers that take a :class:`~hopline.handler.Context` get one per request.
"""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

from hopline.handler import Context
from hopline.wire.amqp import BINARY_CONTENT_TYPE, ERROR_HEADER, TEXT_CONTENT_TYPE
from hopline.wire.batch import (
    BATCH_CONTENT_TYPE,
    BatchFormatError,
    ItemError,
    decode_requests,
    encode_replies,
)
from hopline.wire.errors import ErrorCode
from hopline.wire.incoming import Incoming
from processor.calls import Caller
from processor.deliveries import failed_deliveries
from processor.streams import MessageStreams

__all__ = ["Handling", "Outgoing", "expired"]

Outgoing = tuple[bytes, str, dict[str, Any] | None]


class Handling:
    """The replies of one handler's messages. See the module docstring."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.malformed = 0

    def contexts(
        self, message: Incoming, deadline: int | None, count: int | None
    ) -> list[Context | None]:
        """One context per request (``count`` None: a plain message), if the handler wants one."""
        if not self.caller.shape.takes_context:
            return [None] * (count or 1)
        headers = types.MappingProxyType(dict(message.headers))
        corr = message.correlation_id
        at = None if deadline is None else deadline / 1000
        attempt = failed_deliveries(message) + 1
        if count is None:
            return [Context(corr, at, attempt, headers)]
        return [Context(corr, at, attempt, headers, i) for i in range(count)]

    async def plain(
        self, message: Incoming, deadline: int | None, streams: MessageStreams | None
    ) -> Outgoing | None:
        """The reply to a plain message, or None when its deadline passed before it ran."""
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
        (ctx,) = self.contexts(message, deadline, None)
        caller = self.caller
        if caller.inline:
            result = caller.call_inline(payload, ctx)
            if not isinstance(result, str | bytes | ItemError):
                result = await result
        else:
            outcome = await caller.run(payload, ctx, 0, streams, lambda: expired(deadline))
            if outcome is None:
                return None
            result = outcome
        if isinstance(result, ItemError):
            return result.message.encode(), TEXT_CONTENT_TYPE, {ERROR_HEADER: result.code}
        if isinstance(result, bytes):
            return result, BINARY_CONTENT_TYPE, None
        return result.encode(), TEXT_CONTENT_TYPE, None

    async def batch(
        self, message: Incoming, deadline: int | None, streams: MessageStreams | None
    ) -> Outgoing | None:
        """The reply to a batch, or None when its deadline passed before every item ran."""
        try:
            payloads = decode_requests(message.body)
        except BatchFormatError as exc:
            self.malformed += 1
            text = f"malformed request batch: {exc}"
            return text.encode(), TEXT_CONTENT_TYPE, {ERROR_HEADER: ErrorCode.BAD_REQUEST.value}
        contexts = self.contexts(message, deadline, len(payloads))
        caller = self.caller
        results: list[str | bytes | ItemError] = []
        if caller.inline:
            for payload, ctx in zip(payloads, contexts, strict=True):
                if expired(deadline):
                    return None
                result = caller.call_inline(payload, ctx)
                if not isinstance(result, str | bytes | ItemError):
                    result = await result
                results.append(result)
        else:

            def too_late() -> bool:
                return expired(deadline)

            left = [len(payloads)]

            async def item(i: int, payload: str | bytes, ctx: Context | None) -> Any:
                result = await caller.run(payload, ctx, i, streams, too_late)
                left[0] -= 1
                if result is not None and left[0] and streams is not None:
                    streams.answer(i, result)  # others still run: answer this one now
                return result

            outcomes = await asyncio.gather(
                *(
                    item(i, payload, ctx)
                    for i, (payload, ctx) in enumerate(zip(payloads, contexts, strict=True))
                )
            )
            for outcome in outcomes:
                if outcome is None:
                    return None
                results.append(outcome)
        return encode_replies(results), BATCH_CONTENT_TYPE, None


def expired(deadline: int | None) -> bool:
    """Whether a ``x-hopline-deadline-ms`` value lies in the past."""
    return deadline is not None and time.time() * 1000 > deadline
