"""The gateway's request table: every request from submission to its end (pure: no I/O).

The AMQP adapter (:mod:`gateway.broker`) feeds it events and the time; it never
touches a socket or a clock itself, so every rule below is tested without a network
(tests/gateway/test_table.py).

Contract:

* :meth:`RequestTable.admit` counts a request as pending, or refuses it with a
  ``busy`` :class:`~hopline.wire.errors.Failure` when the gateway-wide caps
  (``max_pending`` requests, ``max_pending_bytes`` of payload) would be exceeded. A
  refused request is not pending and must be answered by the caller.
* Admitted requests wait in the outbox until :meth:`take_outbox`; the deadline of
  all of them is the time the oldest one entered the outbox plus ``timeout``.
* :meth:`register` puts requests that travel together (one AMQP message) under a
  fresh correlation id. Because the timeout is the same for every request and time
  only moves forward, entries are registered in deadline order: the table keeps them
  in an insertion-ordered map, so the oldest deadline is always at its head.
* :meth:`finish` ends a request exactly once (first caller wins) and returns whether
  it did; :meth:`cancel` ends one silently (its client went away). Either way the
  request's bytes and count are released at once, and an entry whose requests have
  all ended leaves the table at once: memory is proportional to what is pending,
  never to throughput x timeout.
* :meth:`match` takes the entry a reply's correlation id names (None for a late,
  duplicate or foreign reply); :meth:`peek` finds it without taking it (a partial
  reply of a streamed request); :meth:`expired` takes every entry whose deadline has
  passed.
* Ended requests keep no reference to their entry or their owner's callback, so
  nothing on the hot path waits for the cycle collector.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gateway.requests import Request, Result
from hopline.wire.errors import ErrorCode, Failure

__all__ = ["InFlight", "RequestTable"]


def _new_correlation_id() -> str:
    return str(uuid.uuid4())


class InFlight:
    """Requests travelling in one AMQP message, waiting for its reply.

    Attributes:
        corr: the message's correlation id.
        requests: the requests, in the order they were packed.
        deadline: when the table gives up on the reply (the adapter's clock).
        batched: whether the message is a hopline batch (else one plain RPC request).
        live: requests of this entry that have not ended yet.
        streams: per request index, the state of its streamed reply (partial
            replies seen; see :mod:`gateway.partials`), or None before any.
        control: the processor's control queue (from its partial replies), where
            cancels of these requests' streams go.
    """

    __slots__ = (
        "__weakref__",
        "batched",
        "control",
        "corr",
        "deadline",
        "live",
        "requests",
        "streams",
    )

    def __init__(self, corr: str, requests: Sequence[Request], deadline: float, batched: bool):
        self.corr = corr
        self.requests = requests
        self.deadline = deadline
        self.batched = batched
        self.live = len(requests)
        self.streams: dict[int, Any] | None = None
        self.control: str | None = None


class RequestTable:
    """Pending requests of one gateway. See the module docstring for the contract.

    Args:
        timeout: seconds from entering the outbox to the deadline.
        max_pending: most pending requests (0: no cap).
        max_pending_bytes: most payload bytes pending (0: no cap). Text counts its
            length in characters (UTF-8 bytes for ASCII text).
        new_id: makes correlation ids (UUID4 strings by default).
    """

    def __init__(
        self,
        timeout: float,
        *,
        max_pending: int = 0,
        max_pending_bytes: int = 0,
        new_id: Callable[[], str] = _new_correlation_id,
    ) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.pending = 0
        self.pending_bytes = 0
        self._new_id = new_id
        self._outbox: list[Request] = []
        self._outbox_since = 0.0
        self._entries: OrderedDict[str, InFlight] = OrderedDict()

    # Admission

    def admit(self, request: Request) -> Failure | None:
        """Count ``request`` as pending; or the ``busy`` failure when a cap is reached."""
        size = request.size
        if self.max_pending and self.pending >= self.max_pending:
            return Failure(ErrorCode.BUSY, f"gateway has {self.pending} requests pending (cap)")
        if self.max_pending_bytes and self.pending_bytes + size > self.max_pending_bytes:
            return Failure(ErrorCode.BUSY, "gateway holds its cap of pending request bytes")
        self.pending += 1
        self.pending_bytes += size
        return None

    def enqueue(self, request: Request, now: float) -> None:
        """Put an admitted request in the outbox (``now`` starts its deadline if first)."""
        if not self._outbox:
            self._outbox_since = now
        self._outbox.append(request)

    @property
    def outbox_size(self) -> int:
        """Requests waiting in the outbox."""
        return len(self._outbox)

    def take_outbox(self) -> tuple[list[Request], float]:
        """The live requests of the outbox (emptied) and their deadline."""
        requests = [r for r in self._outbox if not r.done]
        self._outbox = []
        return requests, self._outbox_since + self.timeout

    def register(self, requests: Sequence[Request], deadline: float, batched: bool) -> InFlight:
        """Requests leaving in one message: a new entry under a fresh correlation id."""
        entry = InFlight(self._new_id(), requests, deadline, batched)
        for request in requests:
            request.entry = entry
        self._entries[entry.corr] = entry
        return entry

    # Ending

    def finish(self, request: Request, result: Result) -> bool:
        """End ``request`` with ``result`` (calls its owner back); False if it had ended."""
        if request.done:
            return False
        self._release(request)
        request.resolve(result)
        return True

    def cancel(self, request: Request) -> bool:
        """End ``request`` silently (its client is gone); False if it had ended."""
        if request.done:
            return False
        self._release(request)
        request.cancel()
        return True

    def _release(self, request: Request) -> None:
        self.pending -= 1
        self.pending_bytes -= request.size
        entry: InFlight | None = request.entry
        if entry is not None:
            request.entry = None
            entry.live -= 1
            if entry.live == 0:
                self._entries.pop(entry.corr, None)

    # Replies and deadlines

    def match(self, corr: str | None) -> InFlight | None:
        """Take the entry ``corr`` names; None for a late, duplicate or foreign reply."""
        if corr is None:
            return None
        return self._entries.pop(corr, None)

    def peek(self, corr: str | None) -> InFlight | None:
        """The entry ``corr`` names, left in the table (a partial reply: more follows)."""
        return None if corr is None else self._entries.get(corr)

    def forget(self, entry: InFlight) -> None:
        """Take ``entry`` out of the table (its message failed as a whole)."""
        self._entries.pop(entry.corr, None)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a registered entry, if any."""
        for entry in self._entries.values():
            return entry.deadline
        return None

    def expired(self, now: float) -> list[InFlight]:
        """Take every entry whose deadline is at or before ``now``."""
        out: list[InFlight] = []
        entries = self._entries
        while entries:
            corr, entry = next(iter(entries.items()))
            if entry.deadline > now:
                break
            del entries[corr]
            out.append(entry)
        return out

    def drain(self) -> Iterator[Request]:
        """Every request not ended yet (outbox and in flight); empties both."""
        outbox, self._outbox = self._outbox, []
        entries = list(self._entries.values())
        self._entries.clear()
        yield from (r for r in outbox if not r.done)
        for entry in entries:
            yield from (r for r in entry.requests if not r.done)

    @property
    def in_flight(self) -> int:
        """Messages (entries) waiting for their reply."""
        return len(self._entries)
