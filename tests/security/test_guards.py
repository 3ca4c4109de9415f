"""Pure abuse guards: the rate limit's grace (RateGuard) and the handshake head check."""

from __future__ import annotations

from gateway.security import RateGuard, TokenBucket, Verdict, check_head


def test_flood_is_closed_after_a_bounded_number_of_busy_answers() -> None:
    guard = RateGuard(rate=20, burst=20, grace=5, now=0.0)
    verdicts = [guard.check(0.0) for _ in range(1000)]  # one instant: a flood
    assert verdicts[:20] == [Verdict.PASS] * 20
    assert verdicts[20:120] == [Verdict.BUSY] * 100  # rate x grace
    assert verdicts[120] is Verdict.CLOSE


def test_slightly_over_the_rate_is_closed_after_the_grace() -> None:
    guard = RateGuard(rate=10, burst=5, grace=3, now=0.0)
    t, verdicts = 0.0, []
    while t < 10:
        verdicts.append((t, guard.check(t)))
        t += 0.05  # 20/s against 10/s
    first_busy = next(t for t, v in verdicts if v is Verdict.BUSY)
    closed = [t for t, v in verdicts if v is Verdict.CLOSE]
    assert closed and first_busy + 2.99 <= closed[0] < first_busy + 3.2


def test_a_pause_that_refills_the_bucket_ends_the_episode() -> None:
    guard = RateGuard(rate=1, burst=2, grace=10, now=0.0)
    assert [guard.check(0.0) for _ in range(3)] == [Verdict.PASS, Verdict.PASS, Verdict.BUSY]
    # The bucket refilled by 9 s: a new episode starts there.
    assert [guard.check(9.0) for _ in range(3)] == [Verdict.PASS, Verdict.PASS, Verdict.BUSY]
    assert guard.check(12.0) is Verdict.PASS  # refilled


def test_zero_grace_never_closes() -> None:
    guard = RateGuard(rate=1, burst=1, grace=0, now=0.0)
    assert {guard.check(float(i) / 1000) for i in range(1, 5000)} <= {Verdict.PASS, Verdict.BUSY}


def test_bucket_full() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert bucket.full(0.0)
    bucket.take(0.0)
    assert not bucket.full(0.05)
    assert bucket.full(0.1)


def test_head_check_counts_headers_and_subprotocols_without_parsing() -> None:
    assert check_head([("Host", "x")] * 10, max_headers=64, max_subprotocols=16) is None
    assert "headers" in (check_head([("X", "y")] * 65, 64, 16) or "")
    many = ",".join(["a"] * 17)
    assert "subprotocols" in (check_head([("Sec-WebSocket-Protocol", many)], 64, 16) or "")
    split = [("sec-websocket-protocol", "a, b")] * 9  # 18 entries over repeated headers
    assert "subprotocols" in (check_head(split, 64, 16) or "")
    assert check_head([("X", "y")] * 500, max_headers=0, max_subprotocols=0) is None
