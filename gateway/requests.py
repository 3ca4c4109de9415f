"""One request's life inside the gateway (pure: no I/O).

A :class:`Request` is created by a session (or /stream), handed to the broker,
and resolved exactly once: with the reply payload, or with a :class:`Failure`.
Whoever resolves first wins (a reply racing the deadline, a publish error racing
a reply); later attempts are ignored, so a client never sees two answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hopline.wire.errors import Failure

__all__ = ["Failure", "Request", "Result"]


Result = str | bytes | Failure


class Request:
    """A payload waiting for its reply.

    Args:
        payload: ``str`` for a text request, ``bytes`` for a binary one; the reply
            is delivered with the same type.
        on_done: called once with ``(request, result)`` when the request ends,
            unless the request was cancelled first.
        token: opaque value for the owner, read back in ``on_done`` (a sequence number, a
            client id, a future).
    """

    __slots__ = ("batch", "done", "on_done", "payload", "token")

    def __init__(
        self, payload: str | bytes, on_done: Callable[[Request, Result], None], token: Any
    ):
        self.payload = payload
        self.on_done = on_done
        self.token = token
        self.done = False
        self.batch: Any = None  # the in-flight entry this request travels in

    @property
    def is_text(self) -> bool:
        """Whether the request (and so its reply) is text."""
        return isinstance(self.payload, str)

    def resolve(self, result: Result) -> bool:
        """End the request with ``result``; returns False if it had already ended."""
        if self.done:
            return False
        self.done = True
        self.on_done(self, result)
        return True

    def cancel(self) -> bool:
        """End the request silently (its client went away); False if already ended."""
        if self.done:
            return False
        self.done = True
        return True
