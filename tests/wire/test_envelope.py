"""The hopline.v1 envelope and the plain error frame (pure, no network)."""

from __future__ import annotations

import json

import pytest

from hopline.wire.envelope import (
    ErrorCode,
    ProtocolError,
    decode_envelope,
    encode_envelope_error,
    encode_envelope_reply,
    encode_plain_error,
)


def test_decode_valid_envelope() -> None:
    """A string id and string data decode as given."""
    env = decode_envelope('{"id": "a1", "data": "hello"}')
    assert (env.id, env.data) == ("a1", "hello")


def test_numeric_id_is_kept() -> None:
    """Numeric ids are echoed as numbers."""
    assert decode_envelope('{"id": 7, "data": ""}').id == 7


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"data": "x"}', "no 'id'"),
        ('{"id": true, "data": "x"}', "string or a number"),
        ('{"id": {"a": 1}, "data": "x"}', "string or a number"),
        ('{"id": 1, "data": 5}', "'data' must be a string"),
        ('{"id": 1}', "'data' must be a string"),
        (b'{"id": 1, "data": "x"}', "text frames"),
    ],
)
def test_malformed_envelopes_are_rejected(frame: str | bytes, reason: str) -> None:
    """Each malformed frame raises ProtocolError naming what is wrong."""
    with pytest.raises(ProtocolError, match=reason):
        decode_envelope(frame)


def test_error_keeps_the_client_id_when_readable() -> None:
    """A bad 'data' still lets the error echo the id."""
    with pytest.raises(ProtocolError) as info:
        decode_envelope('{"id": "x9", "data": null}')
    assert info.value.client_id == "x9"


def test_encoders_round_trip_through_json() -> None:
    """Replies and errors are the documented JSON shapes, unicode kept as is."""
    assert json.loads(encode_envelope_reply(3, "héllo")) == {"id": 3, "data": "héllo"}
    assert json.loads(encode_envelope_error("a", ErrorCode.TIMEOUT, "late")) == {
        "id": "a",
        "error": {"code": "timeout", "message": "late"},
    }
    assert json.loads(encode_plain_error(ErrorCode.BUSY, "full")) == {
        "error": {"code": "busy", "message": "full"}
    }


def test_latency_histogram_buckets_follow_prometheus_le() -> None:
    """An observation equal to a bound counts in that bound's bucket; larger ones in +Inf."""
    from gateway.metrics import Histogram

    h = Histogram((0.001, 0.01))
    for value in (0.001, 0.0011, 0.5):
        h.observe(value)
    family = h.family("x", "doc")
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "x_bucket"}
    assert buckets == {"0.001": 1, "0.01": 2, "+Inf": 3}
    assert h.count == 3
