"""The request table, fed events and a clock, without a network (gateway/table.py)."""

from __future__ import annotations

import gc
import itertools
import weakref

from hypothesis import given
from hypothesis import strategies as st

from gateway.requests import Request, Result
from gateway.table import RequestTable
from hopline.wire.errors import ErrorCode, Failure


class Owner:
    """Collects what requests ended with, like a session does."""

    def __init__(self) -> None:
        self.results: list[tuple[object, Result]] = []

    def request(self, payload: str | bytes, token: object = None) -> Request:
        return Request(payload, self.on_done, token)

    def on_done(self, request: Request, result: Result) -> None:
        self.results.append((request.token, result))


def table(**kwargs: int) -> RequestTable:
    ids = itertools.count()
    return RequestTable(30.0, new_id=lambda: f"c{next(ids)}", **kwargs)


def test_admitted_requests_are_pending_until_they_end() -> None:
    """admit counts requests and bytes; finish and cancel give both back."""
    t, owner = table(), Owner()
    a, b = owner.request("hello", 1), owner.request(b"\x00" * 10, 2)
    assert t.admit(a) is None and t.admit(b) is None
    assert (t.pending, t.pending_bytes) == (2, 15)
    assert t.finish(a, "hello world")
    assert t.cancel(b)
    assert (t.pending, t.pending_bytes) == (0, 0)
    assert owner.results == [(1, "hello world")]


def test_a_request_ends_once() -> None:
    """The first finish wins; later finishes and cancels are ignored."""
    t, owner = table(), Owner()
    r = owner.request("x", 7)
    t.admit(r)
    assert t.finish(r, "first")
    assert not t.finish(r, Failure(ErrorCode.TIMEOUT, "late"))
    assert not t.cancel(r)
    assert owner.results == [(7, "first")]
    assert t.pending == 0


def test_caps_refuse_with_busy_and_count_nothing() -> None:
    """Past max_pending or max_pending_bytes a request is refused with busy and not counted."""
    t, owner = table(max_pending=2, max_pending_bytes=10), Owner()
    assert t.admit(owner.request("12345")) is None
    big = t.admit(owner.request("123456"))
    assert isinstance(big, Failure) and big.code is ErrorCode.BUSY
    assert t.admit(owner.request("1")) is None
    full = t.admit(owner.request("1"))
    assert isinstance(full, Failure) and full.code is ErrorCode.BUSY
    assert (t.pending, t.pending_bytes) == (2, 6)


def test_outbox_deadline_starts_with_its_oldest_request() -> None:
    """take_outbox returns live requests and the first one's time plus the timeout."""
    t, owner = table(), Owner()
    a, b, c = (owner.request(p) for p in "abc")
    for now, r in zip((100.0, 100.5, 101.0), (a, b, c), strict=True):
        t.admit(r)
        t.enqueue(r, now)
    t.cancel(b)
    requests, deadline = t.take_outbox()
    assert requests == [a, c]
    assert deadline == 130.0
    assert t.outbox_size == 0


def test_reply_matches_its_entry_once() -> None:
    """match takes the entry of a correlation id; a second or unknown id gets None."""
    t, owner = table(), Owner()
    a, b = owner.request("a"), owner.request("b")
    for r in (a, b):
        t.admit(r)
    entry = t.register([a, b], 130.0, batched=True)
    assert t.match(entry.corr) is entry
    assert t.match(entry.corr) is None
    assert t.match("foreign") is None
    assert t.match(None) is None


def test_expired_takes_entries_in_deadline_order() -> None:
    """expired returns every entry at or past its deadline, oldest first, and no other."""
    t, owner = table(), Owner()
    entries = []
    for i, deadline in enumerate((10.0, 11.0, 12.0)):
        r = owner.request(str(i))
        t.admit(r)
        entries.append(t.register([r], deadline, batched=False))
    assert t.next_deadline() == 10.0
    assert t.expired(11.0) == entries[:2]
    assert t.next_deadline() == 12.0
    assert t.expired(11.5) == []


def test_an_entry_whose_requests_all_ended_leaves_at_once() -> None:
    """Finished and cancelled requests free their entry without waiting for its deadline."""
    t, owner = table(), Owner()
    a, b, c = (owner.request(p) for p in "abc")
    for r in (a, b, c):
        t.admit(r)
    first = t.register([a, b], 10.0, batched=True)
    second = t.register([c], 11.0, batched=False)
    t.finish(a, "A")
    assert t.in_flight == 2
    t.cancel(b)
    assert t.in_flight == 1
    assert t.next_deadline() == second.deadline
    assert t.match(first.corr) is None  # its late reply is dropped


def test_ended_requests_are_freed_without_the_cycle_collector() -> None:
    """Once answered, nothing keeps a request or its entry alive: reference counting frees them."""
    t, owner = table(), Owner()
    r = owner.request("x")
    t.admit(r)
    entry = t.register([r], 10.0, batched=True)
    refs = [weakref.ref(r), weakref.ref(entry)]
    taken = t.match(entry.corr)
    assert taken is not None
    t.finish(r, "y")
    del r, entry, taken
    gc.disable()
    try:
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_drain_returns_everything_not_ended() -> None:
    """drain yields outbox and in-flight requests that have not ended, and empties the table."""
    t, owner = table(), Owner()
    a, b, c = (owner.request(p) for p in "abc")
    for r in (a, b, c):
        t.admit(r)
    t.register([a, b], 10.0, batched=True)
    t.finish(b, "B")
    t.enqueue(c, 1.0)
    assert sorted(r.payload for r in t.drain()) == ["a", "c"]
    assert t.in_flight == 0 and t.outbox_size == 0


@given(st.lists(st.sampled_from(["finish", "cancel", "expire", "reply"]), max_size=60))
def test_every_request_ends_exactly_once(events: list[str]) -> None:
    """Whatever the order of replies, cancels and deadlines: each request ends once."""
    t, owner = table(), Owner()
    requests = [owner.request(str(i), i) for i in range(len(events))]
    for i, r in enumerate(requests):
        t.admit(r)
        t.register([r], float(i), batched=False)
    cancelled = 0
    for i, (event, r) in enumerate(zip(events, requests, strict=True)):
        if event == "finish":
            t.finish(r, "ok")
        elif event == "cancel":
            cancelled += t.cancel(r)
        elif event == "expire":
            for entry in t.expired(float(i)):
                for req in entry.requests:
                    t.finish(req, Failure(ErrorCode.TIMEOUT, "t"))
        else:
            entry = t.match(r.entry.corr if r.entry else None)
            if entry is not None:
                t.finish(r, "reply")
    for request in list(t.drain()):
        t.finish(request, Failure(ErrorCode.UNAVAILABLE, "closed"))
    tokens = [token for token, _ in owner.results]
    assert len(tokens) == len(set(tokens))
    assert len(tokens) + cancelled == len(requests)
    assert (t.pending, t.pending_bytes, t.in_flight) == (0, 0, 0)
