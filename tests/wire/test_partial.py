"""Partial reply batches and cancel messages (streamed replies on AMQP; pure, no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.wire.batch import (
    BatchFormatError,
    Chunk,
    ItemError,
    decode_cancel,
    decode_partials,
    decode_replies,
    encode_cancel,
    encode_partials,
    encode_replies,
)

u32 = st.integers(min_value=0, max_value=2**32 - 1)
data = st.one_of(st.text(), st.binary())
errors = st.builds(
    ItemError, code=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_"), message=st.text()
)
chunks = st.lists(
    st.one_of(
        st.builds(Chunk, index=u32, seq=u32, data=data),
        st.builds(Chunk, index=u32, seq=u32, data=st.one_of(data, errors), last=st.just(True)),
    ),
    max_size=40,
)


@given(chunks)
def test_partials_round_trip(items: list[Chunk]) -> None:
    """Index, sequence number, kind (text or binary) and content survive, in order."""
    assert decode_partials(encode_partials(items)) == items


@given(st.lists(u32, max_size=100))
def test_cancel_round_trip(indexes: list[int]) -> None:
    """A cancel body lists request indexes; empty means every request."""
    assert decode_cancel(encode_cancel(indexes)) == indexes


@given(chunks, st.integers(min_value=1, max_value=12))
def test_truncated_partials_are_errors(items: list[Chunk], cut: int) -> None:
    """A partial batch cut anywhere inside its last chunk raises BatchFormatError."""
    body = encode_partials([*items, Chunk(1, 2, "tail")])
    with pytest.raises(BatchFormatError):
        decode_partials(body[:-cut])


@pytest.mark.parametrize("kind", [2, 3, 7, 11, 255])
def test_unknown_chunk_kind_is_an_error(kind: int) -> None:
    """Text (0), binary (1), and as a last chunk text (8), binary (9) or error (10) exist."""
    with pytest.raises(BatchFormatError, match="kind"):
        decode_partials(b"\x00\x00\x00\x00\x00\x00\x00\x00" + bytes([kind]) + b"\x00" * 4)


def test_only_a_last_chunk_may_be_an_error() -> None:
    """An error ends a request: it cannot be a chunk that more chunks follow."""
    with pytest.raises(ValueError, match="last"):
        encode_partials([Chunk(0, 0, ItemError("bad_request", "no"))])


def test_cancel_body_must_be_whole_indexes() -> None:
    """A cancel body is a multiple of four bytes."""
    with pytest.raises(BatchFormatError):
        decode_cancel(b"\x00\x01\x02")


def test_non_streamed_reply_bytes_are_unchanged() -> None:
    """The reply batch format did not change: a known body decodes as before."""
    body = encode_replies(["hi", b"\x00", ItemError("bad_request", "no")])
    assert body == (
        b"\x00\x00\x00\x00\x02hi\x01\x00\x00\x00\x01\x00\x02\x00\x00\x00\x0ebad_request:no"
    )
    assert list(decode_replies(body, 3)) == ["hi", b"\x00", ItemError("bad_request", "no")]
