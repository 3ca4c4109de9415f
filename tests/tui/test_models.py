"""Pure logic of the TUI: latency maths, the conversation, /stats parsing, backoff, URLs."""

from __future__ import annotations

from datetime import datetime

import pytest

from tui.backoff import Backoff
from tui.config import stats_url
from tui.exchanges import DISCONNECTED, Burst, Conversation, Exchange
from tui.format import fmt_duration, middle_truncate
from tui.latency import LatencyWindow, percentile
from tui.stats import StatsFormatError, StatsHistory, parse_stats

WALL = datetime(2026, 1, 1, 12, 0, 0)


def stats_doc(time: float, replies: int = 0, **queue: object) -> dict[str, object]:
    item = {"name": "in", "ready": 3, "unacked": None, "consumers": 1, **queue}
    return {
        "time": time,
        "broker": "connected",
        "active_websockets": 1,
        "pending_requests": 2,
        "requests_total": replies,
        "replies_total": replies,
        "errors_total": {"timeout": 0},
        "queues": {"source": "amqp", "sampled_at": time - 0.25, "interval": 1.0, "items": [item]},
    }


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..100 is 50, p99 is 99, p100 is the maximum."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_latency_window_forgets_old_samples_and_reports_rate() -> None:
    """Samples older than the window leave the percentiles; rate counts the last 5 s."""
    window = LatencyWindow(window=10, rate_window=5)
    window.add(0.0, 1.0)
    for i in range(10):
        window.add(20.0 + i / 10, 0.010)
    summary = window.summary(now=21.0)
    assert summary.count == 10
    assert summary.p99 == 0.010
    assert summary.last == 0.010
    assert summary.rate == 10 / 5
    assert window.summary(now=100.0).count == 0


def test_latency_history_has_one_p95_per_second() -> None:
    """The sparkline data holds each second's p95, 0 for quiet seconds, newest last."""
    window = LatencyWindow(history=4)
    window.add(10.2, 0.001)
    window.add(12.5, 0.003)
    window.add(12.6, 0.005)
    assert window.history(now=13.0) == [0.001, 0.0, 0.005, 0.0]
    assert window.history(now=12.9) == [0.0, 0.001, 0.0, 0.005]


def test_replies_land_on_their_own_request_in_any_order() -> None:
    """Two outstanding requests answered in reverse order each get their own reply and RTT."""
    conv = Conversation()
    first = conv.request("a", 1.0, WALL, generation=1)
    second = conv.request("b", 2.0, WALL, generation=1)
    assert conv.outstanding == 2
    assert conv.resolve(second.id, 2.5, WALL, data="b world") == (second, 0.5)
    conv.resolve(first.id, 4.0, WALL, error=("timeout", "no reply"))
    assert (second.reply, second.rtt) == ("b world", 0.5)
    assert (first.error_code, first.rtt, first.reply) == ("timeout", 3.0, None)
    assert conv.resolve(first.id, 5.0, WALL, data="late") is None
    assert conv.outstanding == 0


def test_burst_counts_successes_and_errors_by_code() -> None:
    """A burst entry owns its ids and finishes when the last one is answered."""
    conv = Conversation()
    burst, ids = conv.burst(3, "x", 0.0, WALL, generation=1)
    assert len(set(ids)) == 3 and burst.id not in ids
    conv.resolve(ids[0], 0.1, WALL, data="x")
    conv.resolve(ids[1], 0.2, WALL, error=("busy", "full"))
    assert not burst.done
    conv.resolve(ids[2], 0.3, WALL, data="x")
    assert (burst.ok, burst.errors, burst.finished_at) == (2, {"busy": 1}, 0.3)


def test_connection_loss_fails_only_requests_of_older_connections() -> None:
    """fail_before resolves the requests of lost connections with 'disconnected'."""
    conv = Conversation()
    old = conv.request("a", 0.0, WALL, generation=1)
    burst, _ = conv.burst(2, "x", 0.0, WALL, generation=1)
    new = conv.request("b", 0.0, WALL, generation=2)
    changed = conv.fail_before(2, 1.0, WALL, "gone")
    assert changed == [old, burst]
    assert old.error_code == DISCONNECTED and burst.errors == {DISCONNECTED: 2}
    assert not new.done and conv.outstanding == 1


def test_conversation_drops_oldest_entries_beyond_its_limit() -> None:
    """Only max_entries entries are kept; the dropped ones are reported once."""
    conv = Conversation(max_entries=2)
    entries = [conv.request(str(i), 0.0, WALL, 1) for i in range(3)]
    assert conv.entries == entries[1:]
    assert conv.pop_dropped() == entries[:1]
    assert conv.pop_dropped() == []
    assert isinstance(conv.entries[0], Exchange) and not isinstance(conv.entries[0], Burst)


def test_parse_stats_reads_the_gateway_schema() -> None:
    """/stats JSON becomes GatewayStats; unacked stays None for the AMQP source."""
    stats = parse_stats(stats_doc(100.0))
    assert stats.queues[0].name == "in" and stats.queues[0].unacked is None
    assert stats.source_label == "AMQP passive declare"
    assert stats.sample_age == pytest.approx(0.25)
    managed = parse_stats({**stats_doc(1.0), "queues": {"source": "management", "items": []}})
    assert managed.source_label == "management API" and managed.sampled_at is None
    with pytest.raises(StatsFormatError):
        parse_stats(["not", "stats"])


def test_stats_history_reply_rate_averages_the_last_seconds() -> None:
    """The reply rate is the counter delta over the last 5 s of gateway time, not the last
    poll's: bursts every other poll read as one steady rate; a restarted gateway gives 0."""
    history = StatsHistory(length=40, rate_window=5.0)
    history.add(parse_stats(stats_doc(10.0, replies=100)))
    assert history.current_reply_rate is None
    history.add(parse_stats(stats_doc(10.5, replies=150)))
    assert history.current_reply_rate == 100.0  # less than a window seen: since the first
    replies = 150
    rates = []
    for step in range(2, 30):  # polls every 0.5 s; 50 replies in every other one
        replies += 50 if step % 2 else 0
        history.add(parse_stats(stats_doc(10.0 + step / 2, replies=replies)))
        rates.append(history.current_reply_rate)
    assert all(rate == pytest.approx(50.0, abs=5.0) for rate in rates[10:]), rates
    history.add(parse_stats(stats_doc(30.0, replies=5)))
    assert history.current_reply_rate == 0.0
    history.add(parse_stats(stats_doc(30.5, replies=55)))
    assert history.current_reply_rate == 100.0  # the window starts again after the restart
    history.add(parse_stats(stats_doc(30.4, replies=500)))  # older than the latest: ignored
    assert history.current_reply_rate == 100.0
    assert list(history.ready["in"])[-3:] == [3.0, 3.0, 3.0]


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    """Delays grow 0.5, 1, 2, ... to the cap; reset starts over."""
    backoff = Backoff(initial=0.5, maximum=3.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.attempt == 5
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_stats_url_follows_the_websocket_url() -> None:
    """ws -> http and wss -> https on the same host and port, path /stats."""
    assert stats_url("ws://gw:8000/ws") == "http://gw:8000/stats"
    assert stats_url("wss://gw.example/ws?x=1") == "https://gw.example/stats"
    with pytest.raises(ValueError):
        stats_url("http://gw:8000/ws")


def test_formatting_of_durations_and_names() -> None:
    """Durations pick a readable unit; long queue names keep their suffix."""
    assert [fmt_duration(v) for v in (0.0032, 0.0456, 0.25, 2.5)] == [
        "3.20 ms",
        "45.6 ms",
        "250 ms",
        "2.50 s",
    ]
    assert middle_truncate("test-0123456789ab.batch", 16) == "test-01\u2026ab.batch"
    assert middle_truncate("short", 16) == "short"
