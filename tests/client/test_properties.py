"""Property tests of the client protocol: encode/decode round trips and reply matching."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from hopline.client.core import ClientCore, Reply, Unanswered, Unmatched
from hopline.client.pending import PendingTable
from hopline.wire.envelope import (
    decode_envelope,
    decode_plain_reply,
    decode_reply,
    encode_envelope_chunk,
    encode_envelope_error,
    encode_envelope_reply,
    encode_plain_error,
    encode_request,
    request_template,
)
from hopline.wire.errors import ErrorCode, Failure

ids = st.one_of(
    st.none(),
    st.text(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)
data = st.text()
codes = st.sampled_from(list(ErrorCode))


@given(ids, data)
def test_a_request_decodes_on_the_gateway_as_sent(client_id: object, text: str) -> None:
    """What the client encodes, the gateway's decoder reads back unchanged."""
    envelope = decode_envelope(encode_request(client_id, text))  # type: ignore[arg-type]
    assert (envelope.id, envelope.data) == (client_id, text)


@given(ids, data)
def test_a_reply_decodes_on_the_client_as_sent(client_id: object, text: str) -> None:
    """Reply and chunk frames the gateway encodes decode to (id, data, more)."""
    assert decode_reply(encode_envelope_reply(client_id, text)) == (client_id, text, False)  # type: ignore[arg-type]
    assert decode_reply(encode_envelope_chunk(client_id, text)) == (client_id, text, True)  # type: ignore[arg-type]
    assert decode_reply(encode_envelope_reply(client_id, text).encode()) == (
        client_id,
        text,
        False,
    )


@given(ids, codes, data)
def test_an_error_decodes_to_its_failure(client_id: object, code: ErrorCode, text: str) -> None:
    """Error frames of both modes decode to the Failure they were made from."""
    frame = encode_envelope_error(client_id, code, text)  # type: ignore[arg-type]
    assert decode_reply(frame) == (client_id, Failure(code, text), False)
    assert decode_plain_reply(encode_plain_error(code, text)) == Failure(code, text)


@given(st.one_of(st.text(), st.binary()))
def test_plain_replies_are_returned_as_received(frame: str | bytes) -> None:
    """Any plain frame that is not an error object comes back unchanged."""
    result = decode_plain_reply(frame)
    assert result == frame or isinstance(result, Failure)
    if isinstance(result, Failure):
        text = frame.decode() if isinstance(frame, bytes) else frame
        assert set(json.loads(text)) == {"error"}


@given(st.lists(st.text(), min_size=1, max_size=4), st.integers(0, 2**31), st.integers(0, 10**9))
def test_a_template_frame_equals_the_encoded_request(parts: list[str], seq: int, n: int) -> None:
    """request_template(parts) % (id, n...) is exactly encode_request(id, str(n).join(parts))."""
    template = request_template(parts)
    frame = template % ((seq,) + (n,) * (len(parts) - 1))
    assert frame == encode_request(seq, str(n).join(parts))


# matching


@given(st.permutations(list(range(12))), st.integers(1, 12))
def test_replies_in_any_order_each_reach_their_request(order: list[int], count: int) -> None:
    """hopline.v1: whatever the order replies come in, each resolves its own request once."""
    core: ClientCore[str] = ClientCore()
    for i in range(count):
        core.send(f"m{i}", float(i), f"v{i}")
    seen = []
    for i in order:
        event = core.receive(encode_envelope_reply(i + 1, f"r{i}"), 100.0)
        if i < count:
            assert event == Reply(i + 1, f"r{i}", float(i), f"v{i}")
            seen.append(i)
        else:
            assert isinstance(event, Unmatched)
    assert sorted(seen) == list(range(count))
    assert len(core) == 0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.floats(0, 5)),
        st.tuples(st.just("reply"), st.integers(0, 20)),
        st.tuples(st.just("expire"), st.floats(0, 5)),
        st.tuples(st.just("abandon"), st.integers(0, 20)),
    ),
    max_size=60,
)


@given(operations, st.booleans())
def test_the_table_agrees_with_a_simple_model(ops: list[tuple[str, float]], plain: bool) -> None:
    """Against a list-based model: every request ends at most once, in the right way.

    The model keeps every request with its send time and state; a plain reply goes to
    the oldest request not yet replied to (an expired or abandoned one absorbs its late
    reply), a hopline.v1 reply to the id it names.
    """
    timeout = 3.0
    table: PendingTable[int] = PendingTable(by_order=plain, timeout=timeout)
    model: list[list[object]] = []  # [key, at, state]: waiting, done, dropped
    now = 0.0
    for op, arg in ops:
        if op == "send":
            now += arg
            key = len(model)
            table.add(key, now, key)
            model.append([key, now, "waiting"])
        elif op == "expire":
            now += arg
            expected = [e[0] for e in model if e[2] == "waiting" and e[1] + timeout <= now]  # type: ignore[operator]
            assert [key for key, _, _ in table.expire(now)] == expected
            for e in model:
                if e[0] in expected:
                    e[2] = "dropped"
        elif op == "abandon":
            key = int(arg)
            waiting = key < len(model) and model[key][2] == "waiting"
            assert table.abandon(key) is waiting
            if waiting:
                model[key][2] = "dropped"
        elif plain:
            owed = [e for e in model if e[2] in ("waiting", "dropped")]
            got = table.pop_oldest()
            if not owed:
                assert got is None
                continue
            oldest = owed[0]
            assert got == (None if oldest[2] == "dropped" else (oldest[0], oldest[1], oldest[0]))
            oldest[2] = "done"
        else:
            key = int(arg)
            waiting = key < len(model) and model[key][2] == "waiting"
            assert table.pop(key, None) == ((model[key][1], key) if waiting else None)
            if waiting:
                model[key][2] = "done"
        assert len(table) == sum(1 for e in model if e[2] == "waiting")
    drained = [key for key, _, _ in table.drain()]
    assert drained == [e[0] for e in model if e[2] == "waiting"]


@given(st.lists(st.floats(0, 2), min_size=1, max_size=20), st.floats(0, 50))
def test_expiry_never_early_never_late(gaps: list[float], now: float) -> None:
    """expire(now) returns exactly the requests whose deadline is at or before now."""
    core: ClientCore[int] = ClientCore(timeout=4.0)
    at = 0.0
    sent = []
    for i, gap in enumerate(gaps):
        at += gap
        core.send("x", at, i)
        sent.append(at)
    expired = core.expire(now)
    assert expired == [Unanswered(i + 1, t, i) for i, t in enumerate(sent) if t + 4.0 <= now]
    deadline = core.next_deadline()
    assert deadline is None or deadline > now
