"""What partial replies mean for the streamed requests they carry (pure: no I/O).

The wire contract is :mod:`hopline.wire.batch` (partial reply batches). Here:

* :func:`partial_events` turns the chunks of one partial reply batch into events for
  the requests' owners, in order: ``(request, chunk, False)`` for a chunk the owner
  streams (a request with ``on_chunk``), or ``(request, failure, True)`` when the
  stream cannot go on. A request without ``on_chunk`` (plain mode, a client that
  wants one reply) keeps its chunks to be joined with the final reply.
* A stream is one **run** (:data:`~hopline.wire.amqp.RUN_HEADER`): chunks must come
  from the run that sent the first one, numbered without gaps. A chunk of another
  run (the request was redelivered after its processor died and started again) or
  out of sequence ends the request with ``processor_error``: the client never sees
  two runs mixed, nor a truncated stream that looks complete.
* A chunk marked ``last`` ends its request at once (an early answer: its last chunk,
  whole reply or error, sent while other requests of its message still run).
* :func:`final_results` checks the final reply of a message against the runs of
  its streamed requests (same rule) and joins kept chunks with the last one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gateway.replies import as_type_of
from gateway.requests import Request, Result
from gateway.table import InFlight
from hopline.wire.batch import Chunk, ItemError
from hopline.wire.errors import ErrorCode, Failure, failure_from

__all__ = ["StreamState", "final_results", "partial_events"]

INTERRUPTED = "stream interrupted: its processor stopped mid-stream"


class StreamState:
    """One request's streamed reply so far."""

    __slots__ = ("next_seq", "parts", "run")

    def __init__(self, run: str | None) -> None:
        self.run = run
        self.next_seq = 0
        self.parts: list[str | bytes] | None = None  # chunks kept to be joined


def partial_events(
    entry: InFlight, run: str | None, chunks: Sequence[Chunk]
) -> Iterator[tuple[Request, Result, bool]]:
    """Events for the owners of ``entry``'s requests from one partial reply batch.

    ``(request, chunk, False)`` for a chunk to stream, ``(request, result, True)`` for
    a request that ends: its last chunk or whole reply sent early (joined with the
    chunks kept for an owner without ``on_chunk``), its error, or a broken stream.
    """
    requests = entry.requests
    if entry.streams is None:
        entry.streams = {}
    streams: dict[int, StreamState] = entry.streams
    for chunk in chunks:
        if chunk.index >= len(requests):
            continue  # not a request of this message: ignored
        request = requests[chunk.index]
        if request.done:
            continue
        state = streams.get(chunk.index)
        if state is None:
            state = streams[chunk.index] = StreamState(run)
        if state.run != run or chunk.seq != state.next_seq:
            yield request, Failure(ErrorCode.PROCESSOR_ERROR, INTERRUPTED), True
            continue
        if chunk.last:
            yield request, _last(request, state, chunk.data), True
            continue
        state.next_seq += 1
        data = as_type_of(request, chunk.data)  # type: ignore[arg-type]
        if isinstance(data, Failure):
            yield request, data, True
        elif request.on_chunk is not None:
            yield request, data, False
        else:
            if state.parts is None:
                state.parts = []
            state.parts.append(data)


def _last(request: Request, state: StreamState, data: str | bytes | ItemError) -> Result:
    if isinstance(data, ItemError):
        return failure_from(data.code, data.message)
    result = as_type_of(request, data)
    return _joined(state.parts, result) if state.parts else result


def _joined(parts: list[str | bytes], result: Result) -> Result:
    if isinstance(result, Failure):
        return result
    if isinstance(result, str):
        return "".join(p for p in [*parts, result] if isinstance(p, str))
    return b"".join(p for p in [*parts, result] if isinstance(p, bytes))


def final_results(entry: InFlight, results: list[Result], run: str | None) -> list[Result]:
    """``results`` of the final reply, checked against the streams of ``entry`` and joined."""
    streams: dict[int, StreamState] | None = entry.streams
    if not streams:
        return results
    out = list(results)
    for index, state in streams.items():
        result = out[index]
        if state.run != run:
            out[index] = Failure(ErrorCode.PROCESSOR_ERROR, INTERRUPTED)
        elif state.parts:
            out[index] = _joined(state.parts, result)
    return out
