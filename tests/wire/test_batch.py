"""The batch wire format between gateway and processor (pure, no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.wire.batch import (
    BatchFormatError,
    ItemError,
    decode_replies,
    decode_requests,
    encode_replies,
    encode_requests,
)

payloads = st.lists(st.one_of(st.text(), st.binary()), max_size=50)


@given(payloads)
def test_requests_round_trip(items: list[str | bytes]) -> None:
    """Text stays text, binary stays binary, order and content are kept."""
    assert decode_requests(encode_requests(items)) == items


@given(payloads)
def test_replies_round_trip_with_errors(items: list[str | bytes]) -> None:
    """Replies and item errors come back in order."""
    replies = [*items, ItemError("processor_error", "boom: with colon")]
    decoded = decode_replies(encode_replies(replies), len(replies))
    assert list(decoded) == replies


def test_wrong_item_count_is_an_error() -> None:
    """A reply batch must answer every request item."""
    with pytest.raises(BatchFormatError, match="expected 3"):
        decode_replies(encode_replies(["a", "b"]), 3)


@pytest.mark.parametrize(
    "body", [b"\x00\x00\x00", b"\x00\x00\x00\x00\x05ab", b"\x07\x00\x00\x00\x00"]
)
def test_truncated_or_unknown_bodies_are_errors(body: bytes) -> None:
    """Truncated headers, short payloads and unknown kinds raise BatchFormatError."""
    with pytest.raises(BatchFormatError):
        decode_requests(body)


def test_invalid_utf8_text_item_is_an_error() -> None:
    """A text item must be UTF-8."""
    with pytest.raises(BatchFormatError, match="UTF-8"):
        decode_requests(b"\x00\x00\x00\x00\x01\xff")
