"""Load runs against a tiny test server with injected delays and faults (real sockets)."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.config import LoadSettings
from loadtest.runner import RunResult, run
from loadtest.stats import Outcome, latency_summary
from tests.loadtest.servers import EchoServer


def load(server: EchoServer, **overrides: object) -> RunResult:
    options: dict[str, object] = {"procs": 1, "connections": 4, **overrides}
    return run(LoadSettings(url=server.url, **options))  # type: ignore[arg-type]


def outcomes(result: RunResult) -> dict[str, int]:
    c = result.aggregate.counters
    return {o.value: c[o.value] for o in Outcome}


def assert_adds_up(result: RunResult) -> None:
    c = result.aggregate.counters
    assert sum(outcomes(result).values()) == c["sent"] > 0


def test_p50_lands_near_the_injected_delay() -> None:
    """With a 100 ms server delay and one request in flight, p50 is 100 ms plus a little."""
    with EchoServer(delay=0.1) as server:
        result = load(server, duration=1.5)
    latency = latency_summary(result.aggregate.total)
    assert 100 <= latency["p50"] < 150, latency
    assert result.aggregate.counters["ok"] == result.aggregate.counters["sent"]


def test_every_reply_is_verified_in_both_protocols() -> None:
    """Wrong replies count as mismatches, in hopline.v1 (by id) and plain (in order)."""
    for protocol in ("hopline.v1", "plain"):
        with EchoServer(wrong_every=10) as server:
            result = load(server, protocol=protocol, in_flight=8, requests=400, duration=None)
        assert outcomes(result) == {
            "ok": 360,
            "mismatch": 40,
            "error": 0,
            "timeout": 0,
            "disconnect": 0,
        }, protocol


def test_plain_mode_matches_replies_in_order() -> None:
    """Plain mode pairs each reply with the oldest outstanding request: all verify."""
    with EchoServer() as server:
        result = load(server, protocol="plain", in_flight=16, requests=1000, duration=None)
    assert outcomes(result)["ok"] == 1000
    assert result.aggregate.counters["unmatched"] == 0


def test_error_replies_are_counted_by_code() -> None:
    """Every error reply is an 'error' outcome, counted under its code."""
    with EchoServer(error_every=5) as server:
        result = load(server, in_flight=4, requests=200, duration=None)
    assert outcomes(result)["error"] == 40
    assert result.aggregate.error_codes == {"busy": 40}


def test_timeouts_then_late_replies() -> None:
    """Requests without a reply in --timeout are timeouts; their late replies are unmatched."""
    with EchoServer(delay=1.0) as server:
        result = load(server, timeout=0.2, requests=8, duration=None)
    assert outcomes(result)["timeout"] == 8
    assert_adds_up(result)


def test_disconnects_and_the_ledger_add_up(tmp_path: Path) -> None:
    """Dropped connections lose their requests, reconnect, and the ledger has one row each."""
    ledger = tmp_path / "ledger.jsonl"
    with EchoServer(drop_after=20) as server:
        result = load(server, in_flight=4, duration=1.0, ledger=str(ledger))
    counts = outcomes(result)
    assert counts["disconnect"] > 0
    assert result.drops > 0 and result.reconnects > 0
    assert_adds_up(result)
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(rows) == result.aggregate.counters["sent"]
    assert len({(r["worker"], r["conn"], r["seq"]) for r in rows}) == len(rows)  # unique ids
    by_outcome: dict[str, int] = {}
    for row in rows:
        by_outcome[row["outcome"]] = by_outcome.get(row["outcome"], 0) + 1
    assert by_outcome == {k: v for k, v in counts.items() if v}


def test_csv_ledger_has_a_header_and_a_row_per_request(tmp_path: Path) -> None:
    """A .csv ledger is CSV with a header line."""
    ledger = tmp_path / "ledger.csv"
    with EchoServer(error_every=3) as server:
        result = load(server, requests=30, duration=None, ledger=str(ledger))
    lines = ledger.read_text().splitlines()
    assert lines[0] == "worker,conn,seq,start_s,latency_ms,outcome,code"
    assert len(lines) - 1 == result.aggregate.counters["sent"] == 30
    assert sum(line.endswith(",error,busy") for line in lines) == 10


def test_open_model_shows_a_stall_that_a_closed_loop_hides() -> None:
    """A one-second server stall shows in the open model's p99; a closed loop's p99 hides it."""
    with EchoServer(stall_after=0.5, stall_for=1.0) as server:
        opened = load(server, connections=10, rate=200, duration=2.5, timeout=5.0)
    with EchoServer(stall_after=0.5, stall_for=1.0) as server:
        closed = load(server, connections=2, duration=2.5, timeout=5.0)
    open_lat = latency_summary(opened.aggregate.total)
    closed_lat = latency_summary(closed.aggregate.total)
    assert open_lat["p99"] >= 900, open_lat
    assert open_lat["p90"] >= 500, open_lat
    assert closed_lat["max"] >= 900, closed_lat  # the stall happened to the closed loop too
    assert closed_lat["p99"] < open_lat["p99"] / 4, (closed_lat, open_lat)
    assert opened.aggregate.counters["sent"] == 500
    assert_adds_up(opened)


def test_ramp_up_spreads_connection_attempts() -> None:
    """--ramp-up 0.5s opens ten connections spread over about half a second."""
    with EchoServer() as server:
        result = load(server, connections=10, ramp_up=0.5, requests=20, duration=None)
        spread = max(server.opened_at) - min(server.opened_at)
    assert result.opened == 10
    assert 0.35 <= spread < 1.0
    assert latency_summary(result.connect_hist)["count"] == 10


def test_no_server_means_no_connection() -> None:
    """Connections refused everywhere end the run quickly with their reason counted."""
    with EchoServer() as server:
        url = server.url
    result = run(LoadSettings(url=url, procs=1, connections=3, duration=5.0))
    assert not result.connected
    assert result.connect_failures == {"connection refused": 3}
    assert result.aggregate.counters["sent"] == 0


def test_think_time_paces_a_closed_loop() -> None:
    """--think spaces the requests of a connection; latency excludes the pause."""
    with EchoServer() as server:
        result = load(server, connections=2, think=0.1, duration=1.0)
    sent = result.aggregate.counters["sent"]
    assert 10 <= sent <= 22  # about 2 connections x 10 requests
    assert latency_summary(result.aggregate.total)["p50"] < 100


def test_every_request_lost_to_disconnects_still_ends() -> None:
    """A server that drops each connection at its first request: all requests end as disconnects."""
    with EchoServer(drop_after=1) as server:
        result = load(server, connections=2, requests=10, duration=None)
    assert outcomes(result)["disconnect"] == 10
    assert result.reconnects >= 8
    assert_adds_up(result)


def test_frames_of_every_length_class() -> None:
    """Requests of 7-bit, 16-bit and 64-bit frame lengths reach the server intact."""
    for size in (100, 300, 70_000):
        with EchoServer() as server:
            message = "x" * size + "{n}"
            result = load(server, connections=1, message=message, requests=5, duration=None)
        assert outcomes(result)["ok"] == 5, size


def test_closed_loop_gives_up_when_no_connection_comes_back() -> None:
    """When every connection is lost and reconnects are refused, the run ends (no hang)."""
    with EchoServer(drop_after=1, stop_listening_on_drop=True) as server:
        result = load(server, connections=1, requests=100, duration=None, connect_timeout=0.5)
    assert outcomes(result)["disconnect"] == 1
    assert result.aggregate.counters["sent"] == 1
    assert result.connect_failures.get("connection refused", 0) >= 1
