"""The sans-I/O client core, fed frames and a clock by hand (no network).

In the style of websockets' tests/test_protocol.py: each test drives a
:class:`ClientCore` through a scenario and checks the frames it produces and the
events it returns.
"""

from __future__ import annotations

import json

import pytest

from hopline.client.core import (
    Chunk,
    ClientCore,
    Failed,
    Reply,
    Unanswered,
    Unmatched,
    describe_close,
)
from hopline.wire.envelope import (
    encode_envelope_chunk,
    encode_envelope_error,
    encode_envelope_reply,
    encode_plain_error,
)
from hopline.wire.errors import ErrorCode, Failure


def test_a_request_is_an_envelope_with_the_next_id() -> None:
    """Requests get ids 1, 2, ... and frames that are hopline.v1 envelopes."""
    core: ClientCore[str] = ClientCore()
    assert core.send("hello", 0.0, "a") == (1, '{"id":1,"data":"hello"}')
    assert core.send("héllo", 0.0, "b") == (2, '{"id":2,"data":"héllo"}')
    assert len(core) == 2


def test_replies_match_by_id_in_any_order() -> None:
    """hopline.v1: each reply goes to the request its id names, whatever the order."""
    core: ClientCore[str] = ClientCore()
    core.send("a", 1.0, "first")
    core.send("b", 2.0, "second")
    assert core.receive(encode_envelope_reply(2, "B"), 3.0) == Reply(2, "B", 2.0, "second")
    assert core.receive(encode_envelope_reply(1, "A"), 3.0) == Reply(1, "A", 1.0, "first")
    assert len(core) == 0


def test_caller_ids_are_echoed_and_may_not_repeat() -> None:
    """A caller-chosen id is used as is; the same id twice while waiting is refused."""
    core: ClientCore[None] = ClientCore()
    assert core.send("x", 0.0, None, id="job-7")[1] == '{"id":"job-7","data":"x"}'
    with pytest.raises(KeyError):
        core.send("y", 0.0, None, id="job-7")
    assert core.receive(encode_envelope_reply("job-7", "X"), 1.0) == Reply("job-7", "X", 0.0, None)
    core.send("y", 2.0, None, id="job-7")  # free again once answered


def test_generated_ids_skip_ids_the_caller_took() -> None:
    """An automatic id never collides with a caller's integer id that is still waiting."""
    core: ClientCore[None] = ClientCore()
    core.send("x", 0.0, None, id=1)
    assert core.send("y", 0.0, None)[0] == 2


def test_an_error_frame_fails_its_request() -> None:
    """An error frame becomes Failed with the code and message."""
    core: ClientCore[str] = ClientCore()
    core.send("boom", 0.5, "v")
    frame = encode_envelope_error(1, ErrorCode.PROCESSOR_ERROR, "handler exploded")
    assert core.receive(frame, 1.0) == Failed(
        1, Failure(ErrorCode.PROCESSOR_ERROR, "handler exploded"), 0.5, "v"
    )


def test_chunks_stream_until_the_final_frame() -> None:
    """Chunks keep the request waiting; the ordinary reply frame after them ends it."""
    core: ClientCore[str] = ClientCore(timeout=10.0)
    core.send("count", 0.0, "s")
    assert core.receive(encode_envelope_chunk(1, "one "), 1.0) == Chunk(1, "one ", 1.0, "s")
    assert core.receive(encode_envelope_chunk(1, "two "), 2.0) == Chunk(1, "two ", 2.0, "s")
    assert len(core) == 1
    assert core.receive(encode_envelope_reply(1, "three"), 3.0) == Reply(1, "three", 2.0, "s")
    assert len(core) == 0


def test_a_chunk_restarts_the_timeout() -> None:
    """A stream that keeps sending chunks does not expire; a silent one does."""
    core: ClientCore[str] = ClientCore(timeout=5.0)
    core.send("slow", 0.0, "s")
    core.send("other", 1.0, "o")
    core.receive(encode_envelope_chunk(1, "part"), 4.0)
    assert core.next_deadline() == 6.0  # request 2 (sent at 1.0) is now the oldest
    assert core.expire(8.0) == [Unanswered(2, 1.0, "o")]
    assert core.next_deadline() == 9.0
    assert core.expire(9.0) == [Unanswered(1, 4.0, "s")]


def test_expiry_follows_the_injected_clock() -> None:
    """A request expires exactly at sent + timeout, oldest first, not before."""
    core: ClientCore[str] = ClientCore(timeout=2.0)
    core.send("a", 10.0, "a")
    core.send("b", 11.0, "b")
    assert core.next_deadline() == 12.0
    assert core.expire(11.999) == []
    assert core.expire(12.0) == [Unanswered(1, 10.0, "a")]
    assert core.expire(20.0) == [Unanswered(2, 11.0, "b")]
    assert core.next_deadline() is None


def test_a_late_reply_is_unmatched() -> None:
    """The reply to a request that already expired matches nothing."""
    core: ClientCore[str] = ClientCore(timeout=1.0)
    core.send("a", 0.0, "a")
    core.expire(5.0)
    event = core.receive(encode_envelope_reply(1, "A"), 6.0)
    assert isinstance(event, Unmatched) and event.id == 1


def test_duplicates_unknown_ids_and_garbage_are_unmatched() -> None:
    """Frames that are not the reply of a waiting request never resolve one."""
    core: ClientCore[str] = ClientCore()
    core.send("a", 0.0, "a")
    core.receive(encode_envelope_reply(1, "A"), 1.0)
    for frame in (
        encode_envelope_reply(1, "A again"),
        encode_envelope_reply(99, "?"),
        encode_envelope_reply([1], "?"),  # type: ignore[arg-type]
        "not json",
        "[1]",
        '{"id": 1}',
        '{"id": 1, "error": "no object"}',
        encode_envelope_chunk(42, "?"),
    ):
        assert isinstance(core.receive(frame, 2.0), Unmatched), frame


def test_an_error_for_an_unreadable_request_is_unmatched() -> None:
    """The gateway's bad_request with id null belongs to no request of ours."""
    core: ClientCore[str] = ClientCore()
    core.send("a", 0.0, "a")
    event = core.receive(encode_envelope_error(None, ErrorCode.BAD_REQUEST, "bad"), 1.0)
    assert event == Unmatched(None, "no request with this id is waiting")
    assert len(core) == 1


def test_an_abandoned_request_stops_waiting() -> None:
    """Abandoning a request (its caller gave up) makes its reply unmatched."""
    core: ClientCore[str] = ClientCore()
    core.send("a", 0.0, "a")
    assert core.abandon(1) is True
    assert core.abandon(1) is False
    assert isinstance(core.receive(encode_envelope_reply(1, "A"), 1.0), Unmatched)


def test_close_ends_every_waiting_request() -> None:
    """When the connection ends, every waiting request is returned, oldest first."""
    core: ClientCore[str] = ClientCore()
    core.send("a", 0.0, "a")
    core.send("b", 1.0, "b")
    assert core.close() == [Unanswered(1, 0.0, "a"), Unanswered(2, 1.0, "b")]
    assert len(core) == 0


def test_track_waits_for_a_frame_the_caller_encoded() -> None:
    """track() registers a request sent from a template (the load tester's hot path)."""
    core: ClientCore[None] = ClientCore()
    core.track(7, 3.0, None)
    assert core.receive(b'{"id":7,"data":"x"}', 4.0) == Reply(7, "x", 3.0, None)


# plain mode


def test_plain_requests_are_the_data_itself() -> None:
    """Plain mode sends the data unchanged (text or binary)."""
    core: ClientCore[None] = ClientCore("plain")
    assert core.send("hello", 0.0, None) == (1, "hello")
    assert core.send(b"\x00\x01", 0.0, None) == (2, b"\x00\x01")


def test_plain_replies_match_by_order() -> None:
    """Each plain reply belongs to the oldest request still waiting."""
    core: ClientCore[str] = ClientCore("plain")
    core.send("a", 0.0, "a")
    core.send("b", 1.0, "b")
    assert core.receive("A", 2.0) == Reply(1, "A", 0.0, "a")
    assert core.receive(encode_plain_error(ErrorCode.BUSY, "full"), 2.0) == Failed(
        2, Failure(ErrorCode.BUSY, "full"), 1.0, "b"
    )
    assert core.receive("extra", 3.0) == Unmatched(None, "no request was waiting for it")


def test_plain_expired_request_keeps_its_place() -> None:
    """In plain mode the late reply of an expired request is not given to the next one."""
    core: ClientCore[str] = ClientCore("plain", timeout=1.0)
    core.send("a", 0.0, "a")
    core.send("b", 0.5, "b")
    assert core.expire(1.0) == [Unanswered(1, 0.0, "a")]
    assert len(core) == 1
    assert isinstance(core.receive("A (late)", 1.2), Unmatched)
    assert core.receive("B", 1.3) == Reply(2, "B", 0.5, "b")


def test_plain_abandoned_request_keeps_its_place() -> None:
    """Abandoning in plain mode also keeps the slot for the reply that will come."""
    core: ClientCore[str] = ClientCore("plain")
    core.send("a", 0.0, "a")
    core.send("b", 0.0, "b")
    assert core.abandon(1)
    assert isinstance(core.receive("A", 1.0), Unmatched)
    assert core.receive("B", 1.0) == Reply(2, "B", 0.0, "b")


def test_plain_reply_that_only_looks_like_an_error_is_a_reply() -> None:
    """Only a frame that is exactly an error object is an error."""
    core: ClientCore[None] = ClientCore("plain")
    for frame in ('{"error": "text"}', '{"error":{"code":"busy"},"x":1}', '{"error":1'):
        core.send("x", 0.0, None)
        event = core.receive(frame, 1.0)
        assert isinstance(event, Reply) and event.data == frame


def test_plain_binary_replies_pass_through() -> None:
    """Binary replies come back as bytes; a binary error frame is still an error."""
    core: ClientCore[None] = ClientCore("plain")
    core.send(b"\x00", 0.0, None)
    assert core.receive(b"\x00 world", 1.0) == Reply(1, b"\x00 world", 0.0, None)
    core.send(b"x", 0.0, None)
    error = encode_plain_error(ErrorCode.TOO_LARGE, "big").encode()
    event = core.receive(error, 1.0)
    assert isinstance(event, Failed) and event.failure.code is ErrorCode.TOO_LARGE


def test_unknown_error_codes_become_processor_error() -> None:
    """A code this client does not know is read as processor_error, message kept."""
    core: ClientCore[None] = ClientCore()
    core.send("x", 0.0, None)
    frame = json.dumps({"id": 1, "error": {"code": "new_code", "message": "m"}})
    assert core.receive(frame, 1.0) == Failed(1, Failure(ErrorCode.PROCESSOR_ERROR, "m"), 0.0, None)


@pytest.mark.parametrize(
    ("code", "reason", "text"),
    [
        (None, "", "connection lost"),
        (1006, "", "connection lost"),
        (1001, "", "gateway went away (1001)"),
        (1001, "shutting down", "gateway went away (1001): shutting down"),
        (1000, "", "connection closed (1000)"),
        (1008, "policy", "connection closed (1008: policy)"),
    ],
)
def test_close_is_described_in_one_line(code: int | None, reason: str, text: str) -> None:
    """Every way a connection ends has one wording."""
    assert describe_close(code, reason) == text


def test_frames_may_arrive_as_bytes_or_bytearray() -> None:
    """The load tester hands frames over as websockets gives them: bytes or bytearray."""
    core: ClientCore[None] = ClientCore()
    core.send("x", 0.0, None)
    core.send("y", 0.0, None)
    assert core.receive(b'{"id":1,"data":"X"}', 1.0) == Reply(1, "X", 0.0, None)
    assert core.receive(bytearray(b'{"id":2,"data":"Y"}'), 1.0) == Reply(2, "Y", 0.0, None)
    plain: ClientCore[None] = ClientCore("plain")
    plain.send("x", 0.0, None)
    error = bytearray(encode_plain_error(ErrorCode.BUSY, "full").encode())
    assert plain.receive(error, 1.0) == Failed(1, Failure(ErrorCode.BUSY, "full"), 0.0, None)


def test_a_request_that_cannot_be_encoded_is_not_kept_waiting() -> None:
    """Bad data or a bad id raise before the request is tracked."""
    core: ClientCore[None] = ClientCore()
    with pytest.raises(TypeError):
        core.send(b"bytes", 0.0, None)
    with pytest.raises(ValueError):
        core.send("x", 0.0, None, id=True)
    assert len(core) == 0
