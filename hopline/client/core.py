"""The client protocol, sans I/O: requests in, frames out; frames in, events out.

:class:`ClientCore` does no I/O and reads no clock: the caller sends the frames it
returns, feeds every frame it receives to :meth:`ClientCore.receive`, and calls
:meth:`ClientCore.expire` with the current time (any monotonic clock, in the units
of ``timeout``) at :meth:`ClientCore.next_deadline`. It is the one place where the
client side of the protocol lives (encoding and decoding are in
:mod:`hopline.wire.envelope`); the asyncio client (:mod:`hopline.client.aio`), the
load tester and the test helpers all use it.

Each received frame becomes one event:

* :class:`Reply`: the final reply of a request;
* :class:`Chunk`: one part of a streamed reply (``"more": true``); more frames follow,
  and the request's timeout restarts;
* :class:`Failed`: an error frame for a request;
* :class:`Unmatched`: a frame that belongs to no waiting request (a late reply after
  a timeout, a duplicate, an unknown id, or a frame that is not a reply at all).

Every event but :class:`Unmatched` carries the request's id, its ``at`` (when it was
sent, or its last chunk came) and the ``value`` the caller gave when sending it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from hopline.client.pending import PendingTable
from hopline.wire.envelope import (
    ClientId,
    ProtocolError,
    decode_plain_reply,
    decode_reply,
    encode_request,
)
from hopline.wire.errors import Failure

__all__ = [
    "Chunk",
    "ClientCore",
    "Event",
    "Failed",
    "Mode",
    "Reply",
    "Unanswered",
    "Unmatched",
    "describe_close",
]

V = TypeVar("V")
Mode = Literal["hopline.v1", "plain"]


@dataclass(slots=True)
class Reply(Generic[V]):
    """The final reply to request ``id``. Plain mode: ``data`` is the frame as received."""

    id: ClientId
    data: Any
    at: float
    value: V


@dataclass(slots=True)
class Chunk(Generic[V]):
    """One part of the streamed reply to request ``id``; more frames follow."""

    id: ClientId
    data: str
    at: float
    value: V


@dataclass(slots=True)
class Failed(Generic[V]):
    """Request ``id`` got an error frame instead of a reply."""

    id: ClientId
    failure: Failure
    at: float
    value: V


@dataclass(slots=True)
class Unmatched:
    """A frame that belongs to no waiting request: ``id`` (if it had one) and why."""

    id: ClientId
    reason: str


@dataclass(slots=True)
class Unanswered(Generic[V]):
    """A request that will get no reply: it expired, or the connection ended."""

    id: ClientId
    at: float
    value: V


Event = Reply[V] | Chunk[V] | Failed[V] | Unmatched


class ClientCore(Generic[V]):
    """The requests of one connection, from sending to their reply (see the module docstring).

    Args:
        mode: ``hopline.v1`` (JSON envelopes, replies matched by id, in any order)
            or ``plain`` (the frame is the request; replies matched by order).
        timeout: how long a request may wait for its reply (or its next chunk),
            in the units of the ``now`` the caller passes; None: no limit.
    """

    __slots__ = ("_next_id", "_pop", "pending", "plain", "track")

    def __init__(self, mode: Mode = "hopline.v1", timeout: float | None = None) -> None:
        self.plain = mode == "plain"
        self.pending: PendingTable[V] = PendingTable(by_order=self.plain, timeout=timeout)
        self._pop = self.pending.pop
        self._next_id = 0
        self.track: Callable[[ClientId, float, V], None] = self.pending.add
        """``track(id, now, value)``: wait for the reply to a request the caller encoded
        itself (e.g. from a template). Raises KeyError if ``id`` is already waiting.
        (:meth:`PendingTable.add` itself: this is the load tester's hot path.)"""

    def send(self, data: Any, now: float, value: V, id: ClientId = None) -> tuple[ClientId, Any]:
        """A new request: returns its id and the frame to send (``data`` itself in plain mode).

        ``id`` is chosen by the caller or, when None, the next integer. In plain mode the
        id never leaves the client; it names the request in events.

        Raises:
            KeyError: ``id`` is already waiting for a reply.
            ValueError: ``id`` is not a string or a finite number.
        """
        if id is None:
            self._next_id += 1
            id = self._next_id
            while id in self.pending:
                self._next_id += 1
                id = self._next_id
        frame = data if self.plain else encode_request(id, data)
        self.pending.add(id, now, value)
        return id, frame

    def receive(self, frame: str | bytes, now: float) -> Event[V]:
        """The event a frame from the server makes (see the module docstring)."""
        if self.plain:
            entry = self.pending.pop_oldest()
            if entry is None:
                return Unmatched(None, "no request was waiting for it")
            key, at, value = entry
            result = decode_plain_reply(frame)
            if result.__class__ is Failure:
                return Failed(key, result, at, value)  # type: ignore[arg-type]
            return Reply(key, result, at, value)
        try:
            key, result, more = decode_reply(frame)
        except ProtocolError as exc:
            return Unmatched(exc.client_id, str(exc))
        try:
            if more:
                value = self.pending.touch(key, now)
                if value is None:
                    return Unmatched(key, "no request with this id is waiting")
                return Chunk(key, result, now, value)  # type: ignore[arg-type]
            waiting = self._pop(key, None)
        except TypeError:  # an unhashable id: not one we sent
            waiting = None
        if waiting is None:
            return Unmatched(key, "no request with this id is waiting")
        if result.__class__ is Failure:
            return Failed(key, result, waiting[0], waiting[1])  # type: ignore[arg-type]
        return Reply(key, result, waiting[0], waiting[1])

    def abandon(self, id: ClientId) -> bool:
        """Stop waiting for request ``id`` (its reply, if any, becomes :class:`Unmatched`)."""
        return self.pending.abandon(id)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do; None: nothing can expire."""
        return self.pending.next_deadline()

    def expire(self, now: float) -> list[Unanswered[V]]:
        """The requests whose timeout has passed at ``now``; they are no longer waiting."""
        return [Unanswered(key, at, value) for key, at, value in self.pending.expire(now)]

    def close(self) -> list[Unanswered[V]]:
        """The connection ended: every waiting request, which will get no reply."""
        return [Unanswered(key, at, value) for key, at, value in self.pending.drain()]

    def __len__(self) -> int:
        """Requests waiting for their reply."""
        return len(self.pending)


def describe_close(code: int | None, reason: str = "") -> str:
    """One line saying why a WebSocket connection ended (its close code and reason)."""
    if code is None or code == 1006:
        return "connection lost"
    if code == 1001:
        return "gateway went away (1001)" + (f": {reason}" if reason else "")
    return f"connection closed ({code}{': ' + reason if reason else ''})"
