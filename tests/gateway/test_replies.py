"""Reply messages turned into per-request results (gateway/replies.py), without a broker."""

from __future__ import annotations

from gateway.replies import reply_results
from gateway.requests import Request, Result
from gateway.table import InFlight
from hopline.wire.amqp import ERROR_HEADER
from hopline.wire.batch import BATCH_CONTENT_TYPE, ItemError, encode_replies
from hopline.wire.errors import ErrorCode, Failure


def _ignore(request: Request, result: Result) -> None:
    pass


def entry(*payloads: str | bytes, batched: bool = True) -> InFlight:
    return InFlight("c", [Request(p, _ignore, None) for p in payloads], 1.0, batched)


def test_batch_reply_gives_each_request_its_item_in_its_type() -> None:
    """Text requests get text, binary requests get bytes, error items become failures."""
    body = encode_replies([b"one", "two", ItemError("bad_request", "no")])
    results = reply_results(entry("1", b"2", "3"), BATCH_CONTENT_TYPE, {}, body)
    assert results == ["one", b"two", Failure(ErrorCode.BAD_REQUEST, "no")]


def test_unusable_batch_reply_fails_every_request() -> None:
    """A wrong item count or content type is processor_error for all requests of the message."""
    short = encode_replies(["only one"])
    for content_type, body in ((BATCH_CONTENT_TYPE, short), ("text/plain", b"x")):
        results = reply_results(entry("a", "b"), content_type, {}, body)
        assert [r.code for r in results if isinstance(r, Failure)] == [
            ErrorCode.PROCESSOR_ERROR
        ] * 2


def test_one_error_for_a_whole_batch_reaches_every_request() -> None:
    """A processor that answers a batch with one error (it could not read it) keeps its code."""
    headers = {ERROR_HEADER: b"bad_request"}
    results = reply_results(entry("a", "b"), "text/plain", headers, b"malformed batch: x")
    assert results == [Failure(ErrorCode.BAD_REQUEST, "malformed batch: x")] * 2


def test_plain_reply_and_error_header() -> None:
    """A plain reply is the body; with the error header it is that error (unknown codes too)."""
    assert reply_results(entry("a", batched=False), "text/plain", None, b"hi") == ["hi"]
    [err] = reply_results(entry("a", batched=False), None, {ERROR_HEADER: b"timeout"}, b"slow")
    assert err == Failure(ErrorCode.TIMEOUT, "slow")
    [odd] = reply_results(entry("a", batched=False), None, {ERROR_HEADER: "weird"}, b"?")
    assert odd == Failure(ErrorCode.PROCESSOR_ERROR, "?")


def test_non_utf8_reply_to_a_text_request_is_an_error() -> None:
    """A text request whose reply is not UTF-8 gets processor_error, not mojibake."""
    [result] = reply_results(entry("a", batched=False), None, None, b"\xff")
    assert isinstance(result, Failure) and result.code is ErrorCode.PROCESSOR_ERROR
