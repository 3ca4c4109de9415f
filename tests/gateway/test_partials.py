"""Partial replies turned into chunk events and final results (gateway/partials.py), no broker."""

from __future__ import annotations

from gateway.partials import INTERRUPTED, final_results, partial_events
from gateway.requests import Request, Result
from gateway.table import InFlight
from hopline.wire.batch import Chunk, ItemError
from hopline.wire.errors import ErrorCode, Failure


def _ignore(request: Request, result: Result) -> None:
    pass


def _chunk(request: Request, chunk: str | bytes) -> None:
    pass


def entry(streamed: bool = True) -> InFlight:
    on_chunk = _chunk if streamed else None
    requests = [Request(p, _ignore, None, on_chunk) for p in ("a", b"b")]
    return InFlight("c", requests, 1.0, True)


def test_chunks_go_to_streaming_owners_in_their_request_type() -> None:
    """Each chunk becomes an event for its request, typed like the request."""
    e = entry()
    events = list(partial_events(e, "r1", [Chunk(0, 0, "x"), Chunk(1, 0, "y"), Chunk(0, 1, b"z")]))
    assert [(r.payload, data, ends) for r, data, ends in events] == [
        ("a", "x", False),
        (b"b", b"y", False),
        ("a", "z", False),
    ]
    assert final_results(e, ["last", b"end"], "r1") == ["last", b"end"]


def test_another_run_or_a_gap_ends_the_request_with_an_error() -> None:
    """A redelivered request's new run (or a missing chunk) is processor_error, never mixed."""
    e = entry()
    list(partial_events(e, "r1", [Chunk(0, 0, "x"), Chunk(1, 0, "y")]))
    events = list(partial_events(e, "r2", [Chunk(0, 0, "x")]))
    assert events[0][1:] == (Failure(ErrorCode.PROCESSOR_ERROR, INTERRUPTED), True)
    gap = list(partial_events(e, "r1", [Chunk(1, 2, "late")]))
    assert gap[0][1:] == (Failure(ErrorCode.PROCESSOR_ERROR, INTERRUPTED), True)


def test_a_final_reply_from_another_run_is_an_error_for_streamed_requests_only() -> None:
    """Request 0 streamed in run r1; a final reply of run r2 cannot complete it."""
    e = entry()
    list(partial_events(e, "r1", [Chunk(0, 0, "x")]))
    results = final_results(e, ["done", b"fine"], "r2")
    assert results == [Failure(ErrorCode.PROCESSOR_ERROR, INTERRUPTED), b"fine"]


def test_owners_without_on_chunk_get_the_chunks_joined() -> None:
    """Plain mode: no events, the chunks and the final reply joined into one result."""
    e = entry(streamed=False)
    assert (
        list(partial_events(e, "r", [Chunk(0, 0, "x"), Chunk(0, 1, "y"), Chunk(1, 0, "b")])) == []
    )
    assert final_results(e, ["z", b"c"], "r") == ["xyz", b"bc"]
    assert final_results(e, [Failure(ErrorCode.TIMEOUT, "t"), b"c"], "r")[0] == Failure(
        ErrorCode.TIMEOUT, "t"
    )


def test_a_last_chunk_ends_its_request_at_once() -> None:
    """An early answer: the whole reply, the stream's last chunk (joined if kept), or an error."""
    e = entry()
    events = list(partial_events(e, "r", [Chunk(0, 0, "done", last=True)]))
    assert [(data, ends) for _, data, ends in events] == [("done", True)]
    e = entry(streamed=False)
    list(partial_events(e, "r", [Chunk(0, 0, "x")]))
    events = list(
        partial_events(
            e, "r", [Chunk(0, 1, "y", last=True), Chunk(1, 0, ItemError("busy", "no"), True)]
        )
    )
    assert [(data, ends) for _, data, ends in events] == [
        ("xy", True),
        (Failure(ErrorCode.BUSY, "no"), True),
    ]
    skipped = list(partial_events(entry(), "r", [Chunk(0, 3, "z", last=True)]))
    assert skipped[0][1] == Failure(ErrorCode.PROCESSOR_ERROR, INTERRUPTED), "chunks were lost"
