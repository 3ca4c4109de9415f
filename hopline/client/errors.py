"""The client's public exceptions (pure: no I/O).

Every one derives from :class:`HoplineError`. What a user can act on is an
attribute, not text to parse: ``RequestError.code``, ``ConnectError.retryable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hopline.wire.errors import ErrorCode

if TYPE_CHECKING:
    from hopline.wire.envelope import ClientId

__all__ = ["ConnectError", "ConnectionLost", "HoplineError", "InvalidURL", "RequestError"]


class HoplineError(Exception):
    """Base of every exception the hopline client raises."""


class InvalidURL(HoplineError, ValueError):
    """The URL is not a ``ws://`` or ``wss://`` URL; the message holds a hint when one helps."""


class RequestError(HoplineError):
    """A request ended without a reply: an error frame, or no reply before the timeout.

    Attributes:
        code: why (:class:`~hopline.wire.errors.ErrorCode`; ``timeout`` also when the
            client's own timeout expired first).
        message: the human-readable explanation.
        id: the request's ``hopline.v1`` id (plain mode: its sequence number).
    """

    def __init__(self, code: ErrorCode, message: str, id: ClientId = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.id = id


class ConnectError(HoplineError):
    """The connection could not be opened.

    Attributes:
        url: where it tried.
        reason: one line saying why (e.g. ``HTTP 401 (check --token)``).
        retryable: whether trying again later may work (refused, reset, 503) or not
            (400, 401, 403, 404, a server that does not speak ``hopline.v1``).
    """

    def __init__(self, url: str, reason: str, retryable: bool) -> None:
        super().__init__(f"cannot connect to {url}: {reason}")
        self.url = url
        self.reason = reason
        self.retryable = retryable


class ConnectionLost(HoplineError):
    """The connection ended before the request's reply arrived (it may or may not have run).

    Attributes:
        reason: one line, e.g. ``connection lost`` or ``gateway went away (1001)``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
