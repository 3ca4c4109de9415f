"""One request's life inside the gateway (pure: no I/O).

A :class:`Request` is created by a session (or /stream), handed to the broker,
and ended exactly once: resolved with the reply payload or a
:class:`~hopline.wire.errors.Failure`, or cancelled when its client went away.
Whoever ends it first wins (a reply racing the deadline, a publish error racing a
reply); later attempts are ignored, so a client never sees two answers. The
request table (:mod:`gateway.table`) does the bookkeeping around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hopline.wire.errors import Failure

__all__ = ["Failure", "Request", "Result"]

Result = str | bytes | Failure


def _ended(request: Request, result: Result) -> None:
    """The callback of an ended request: holds nothing, so nothing stays referenced."""


class Request:
    """A payload waiting for its reply.

    Args:
        payload: ``str`` for a text request, ``bytes`` for a binary one; the reply
            is delivered with the same type.
        on_done: called once with ``(request, result)`` when the request ends,
            unless the request was cancelled first.
        token: opaque value for the owner, read back in ``on_done`` (a sequence number, a
            client id, a future).
        on_chunk: called with ``(request, chunk)`` for every chunk of a streamed reply
            but the last (which is the result given to ``on_done``); without it the
            chunks are joined into the result (see :mod:`gateway.partials`).

    Attributes:
        size: payload length, counted against the gateway's pending-bytes cap.
        entry: the in-flight entry (:class:`gateway.table.InFlight`) this request
            travels in, until it ends.
    """

    __slots__ = (
        "__weakref__",
        "done",
        "entry",
        "is_text",
        "on_chunk",
        "on_done",
        "payload",
        "size",
        "token",
    )

    def __init__(
        self,
        payload: str | bytes,
        on_done: Callable[[Request, Result], None],
        token: Any,
        on_chunk: Callable[[Request, str | bytes], None] | None = None,
    ):
        self.payload = payload
        self.on_chunk = on_chunk
        self.is_text = isinstance(payload, str)
        self.size = len(payload)
        self.on_done = on_done
        self.token = token
        self.done = False
        self.entry: Any = None

    def published(self) -> None:
        """The payload has left in a message: drop it (the reply needs only its type)."""
        self.payload = "" if self.is_text else b""

    def resolve(self, result: Result) -> bool:
        """End the request with ``result``; returns False if it had already ended."""
        if self.done:
            return False
        self.done = True
        on_done, self.on_done = self.on_done, _ended
        self.on_chunk = None
        on_done(self, result)
        return True

    def cancel(self) -> bool:
        """End the request silently (its client went away); False if already ended."""
        if self.done:
            return False
        self.done = True
        self.on_done = _ended
        self.on_chunk = None
        return True
