"""The public handler API: what a handler module imports (``from hopline.handler import ...``).

A handler is a callable named on the command line (``hopline processor --handler
module:function``). Its shape decides how the processor runs it:

* ``def handle(payload)``: a plain function, run in the processor's thread pool (at
  most ``--concurrency`` at once), so blocking calls (``requests``, a database
  driver, PIL) never stop the event loop or the AMQP heartbeats. Decorate a function
  that only takes microseconds with :func:`inline` to run it on the loop instead.
* ``async def handle(payload)``: run on the event loop (it must not block).
* ``def handle(payload): yield ...`` / ``async def handle(payload): yield ...``: a
  streamed reply; every yielded ``str``/``bytes`` is one chunk (each ``next()`` of a
  plain generator runs in the thread pool).

Every shape may take a second parameter, a :class:`Context` (correlation id,
deadline, attempt, headers). The payload is ``str`` for a text request and
``bytes`` for a binary one; the reply (or chunk) is ``str`` or ``bytes``.

Errors: raising a :class:`Refusal` (:class:`BadRequest`, :class:`Busy`) ends the
request with that error code and ``str(exc)`` as the message; any other exception
becomes ``processor_error``.

Lifecycle: the handler's module may define ``startup()`` and ``shutdown()`` (plain
or ``async``). ``startup`` runs once per processor before it consumes anything (an
exception there stops the processor with exit code 3); ``shutdown`` runs once after
the last request was answered.

This module imports nothing but the standard library and :mod:`hopline.wire.errors`,
so a handler module stays light.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from hopline.wire.errors import ErrorCode

__all__ = ["BadRequest", "Busy", "Context", "Refusal", "inline"]

F = TypeVar("F", bound=Callable[..., Any])

INLINE_ATTRIBUTE = "__hopline_inline__"


class Refusal(Exception):
    """Base of the typed refusals: the request ends with :attr:`code` and ``str(exc)``.

    Subclass it to choose another code from :class:`~hopline.wire.errors.ErrorCode`.
    """

    code: ClassVar[ErrorCode] = ErrorCode.PROCESSOR_ERROR


class BadRequest(Refusal):
    """The caller's fault: the client gets ``bad_request`` with the exception's message."""

    code = ErrorCode.BAD_REQUEST


class Busy(Refusal):
    """The handler cannot take this request now (e.g. a downstream limit): ``busy``."""

    code = ErrorCode.BUSY


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may know about the request it handles (its optional second parameter).

    Attributes:
        correlation_id: the AMQP correlation id of the message that carried the request
            (shared by the requests of one batch message; see ``index``).
        deadline: unix time (seconds) after which nobody waits for the reply, or None.
        attempt: 1 on the first delivery, 2 after one failed delivery (a processor
            died or lost its connection while handling it), and so on.
        headers: the AMQP headers of the message (read-only).
        index: the request's position in its batch message; None for a plain message.
        cancelled: set when the reply is no longer wanted (deadline passed, client
            gone). Async handlers are cancelled outright; a blocking handler running
            in a thread may poll this to stop early.
    """

    correlation_id: str | None
    deadline: float | None
    attempt: int
    headers: Mapping[str, Any]
    index: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def remaining(self) -> float | None:
        """Seconds left until the deadline (negative once passed), or None without one."""
        return None if self.deadline is None else self.deadline - time.time()


def inline(handler: F) -> F:
    """Mark a plain (non-async) handler as quick: run it on the event loop, not in a thread.

    Only for handlers that take microseconds and never block (string manipulation);
    a thread hop costs tens of microseconds per call.
    """
    setattr(handler, INLINE_ATTRIBUTE, True)
    return handler
