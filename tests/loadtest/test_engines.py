"""The load tester's pure engines: budget, open-model schedule, tally (no network, no clock)."""

from __future__ import annotations

import json

from loadtest.schedule import NS, Budget, OpenSchedule
from loadtest.stats import Outcome
from loadtest.tally import Tally


def test_budget_stops_at_the_end_time_and_the_request_count() -> None:
    """take() spends the budget, refuses at or past end_ns, and stays exhausted."""
    by_count = Budget(end_ns=None, requests=2)
    assert [by_count.take(0) for _ in range(3)] == [True, True, False]
    assert by_count.exhausted
    by_time = Budget(end_ns=10, requests=None)
    assert by_time.take(9) and not by_time.take(10)
    assert not by_time.take(5)  # exhausted for good


def test_open_schedule_hands_out_requests_on_a_fixed_grid() -> None:
    """At 100/s, request k is due at load + k*10 ms; due() counts the ones not taken."""
    s = OpenSchedule(load_ns=1_000, rate=100)
    assert s.due(999) == 0
    assert s.due(1_000) == 1
    assert s.due(1_000 + 25_000_000) == 3
    assert [s.take(), s.take()] == [1_000, 1_000 + 10_000_000]
    assert s.due(1_000 + 25_000_000) == 1
    assert s.next_at() == 1_000 + 20_000_000


def test_open_schedule_catches_up_after_a_stall() -> None:
    """After a stall every missed request is due at once, each keeping its scheduled time."""
    s = OpenSchedule(load_ns=0, rate=10)
    assert s.due(NS) == 11
    times = [s.take() for _ in range(11)]
    assert times == [k * NS // 10 for k in range(11)]


def test_tally_reports_deltas_since_the_previous_interval() -> None:
    """interval() carries what changed since the last call: counters, codes, latencies."""
    t = Tally(worker=0, load_ns=0)
    t.count("sent", 3)
    t.replied(0, 1, start_ns=0, now_ns=2_000_000, outcome=Outcome.OK, code=None)
    t.replied(0, 2, start_ns=0, now_ns=3_000_000, outcome=Outcome.ERROR, code="busy")
    first = t.interval()
    assert first["counters"]["sent"] == 3
    assert (first["counters"]["ok"], first["counters"]["error"]) == (1, 1)
    assert first["codes"] == {"busy": 1}
    t.unresolved(0, 3, start_ns=0, outcome=Outcome.TIMEOUT)
    second = t.interval()
    assert second["counters"]["sent"] == 0
    assert second["counters"]["timeout"] == 1
    assert second["codes"] == {}


def test_tally_ledger_rows_in_both_formats() -> None:
    """One row per request, relative start time, latency in ms, outcome and code."""
    jsonl = Tally(worker=2, load_ns=NS, ledger_format="jsonl")
    jsonl.replied(5, 7, start_ns=2 * NS, now_ns=2 * NS + 1_500_000, outcome=Outcome.ERROR, code="x")
    jsonl.unresolved(5, 8, start_ns=2 * NS, outcome=Outcome.DISCONNECT)
    rows = [json.loads(line) for line in jsonl.take_rows().splitlines()]
    assert rows[0] == {
        "worker": 2,
        "conn": 5,
        "seq": 7,
        "start_s": 1.0,
        "latency_ms": 1.5,
        "outcome": "error",
        "code": "x",
    }
    assert rows[1]["latency_ms"] is None and rows[1]["outcome"] == "disconnect"
    assert jsonl.take_rows() == ""
    csv = Tally(worker=0, load_ns=0, ledger_format="csv")
    csv.replied(1, 1, start_ns=0, now_ns=1_000_000, outcome=Outcome.OK, code=None)
    assert csv.take_rows() == "0,1,1,0.000000,1.000,ok,\n"
    silent = Tally(worker=0, load_ns=0)
    silent.replied(1, 1, start_ns=0, now_ns=1, outcome=Outcome.OK, code=None)
    assert silent.rows == []
