"""Error codes: why a request ended without a reply (pure: no I/O).

One vocabulary for every side: the gateway's error frames, the processor's error
replies (:data:`hopline.wire.amqp.ERROR_HEADER` and batch error items), ``/stream``
status codes and every client.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["HTTP_STATUS_BY_CODE", "ErrorCode", "Failure", "failure_from"]


class ErrorCode(StrEnum):
    """Why a request ended without a reply. Shared by both modes, ``/stream`` and AMQP."""

    TIMEOUT = "timeout"  # no reply before the request deadline
    BUSY = "busy"  # a real limit refused it: queue full, rate limit, pending cap
    UNAVAILABLE = "unavailable"  # broker unreachable/refused: may or may not have run
    PROCESSOR_ERROR = "processor_error"  # the handler raised, or the reply was unusable
    TOO_LARGE = "too_large"  # the request or its reply exceeds the size limit
    BAD_REQUEST = "bad_request"  # the frame is not a valid request, or the handler refused it


HTTP_STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.TIMEOUT: 504,
    ErrorCode.BUSY: 503,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.PROCESSOR_ERROR: 502,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.BAD_REQUEST: 400,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one request ended without a reply: a code and a human-readable message."""

    code: ErrorCode
    message: str


def failure_from(code: str, message: str) -> Failure:
    """A :class:`Failure` from a code off the wire; an unknown code becomes ``processor_error``."""
    try:
        error = ErrorCode(code)
    except ValueError:
        error = ErrorCode.PROCESSOR_ERROR
    return Failure(error, message)
