"""SLO and duration parsing, and checking SLOs against measured values (no network)."""

from __future__ import annotations

import pytest

from loadtest.slo import SLOError, check, parse_duration, parse_slo


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold", "unit"),
    [
        ("p99<50ms", "p99", "<", 50.0, "ms"),
        ("p999 <= 1.5s", "p999", "<=", 1500.0, "ms"),
        ("p50<250us", "p50", "<", 0.25, "ms"),
        ("max<2s", "max", "<", 2000.0, "ms"),
        ("errors==0", "errors", "==", 0.0, ""),
        ("timeouts<1%", "timeouts", "<", 1.0, "%"),
        ("rate>=1000", "rate", ">=", 1000.0, "/s"),
        ("rate > 10/s", "rate", ">", 10.0, "/s"),
        ("P90<5MS", "p90", "<", 5.0, "ms"),
    ],
)
def test_valid_slos_parse(text: str, metric: str, op: str, threshold: float, unit: str) -> None:
    """Each documented form parses to metric, operator, threshold in canonical units."""
    slo = parse_slo(text)
    assert (slo.metric, slo.op, slo.threshold, slo.unit) == (metric, op, threshold, unit)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("p98<50ms", "unknown SLO metric"),
        ("p99<50", "needs a unit"),
        ("p99<50mss", "unknown latency unit"),
        ("erors==0", "did you mean 'errors'"),
        ("errors=0", "did you mean '=='"),
        ("errors==0ms", "is a count"),
        ("rate>=10ms", "requests/s"),
        ("p99", "cannot parse"),
        ("", "cannot parse"),
        ("p99<<5ms", "cannot parse"),
    ],
)
def test_typos_are_errors(text: str, hint: str) -> None:
    """A typo raises SLOError with a hint; it never parses into something that passes."""
    with pytest.raises(SLOError, match=hint):
        parse_slo(text)


def test_check_names_the_violation() -> None:
    """A missed threshold fails and describes actual and required values."""
    results = check(
        [parse_slo("p99<50ms"), parse_slo("errors==0"), parse_slo("rate>=100")],
        {"p99": 61.5, "errors": 0, "rate": 250.0, "sent": 10},
    )
    assert [r.passed for r in results] == [False, True, True]
    assert results[0].describe() == "p99 = 61.5 ms, required < 50 ms"


def test_percent_is_of_requests_sent() -> None:
    """errors<1% compares errors as a percentage of the requests sent."""
    (ok,) = check([parse_slo("errors<1%")], {"errors": 1, "sent": 200})
    (bad,) = check([parse_slo("errors<1%")], {"errors": 2, "sent": 200})
    assert (ok.passed, ok.actual, bad.passed) == (True, 0.5, False)


def test_latency_slo_without_replies_fails() -> None:
    """A latency threshold with nothing measured is a miss, not a pass."""
    (result,) = check([parse_slo("p99<1s")], {"p99": None, "sent": 0})
    assert not result.passed
    assert "not measured" in result.describe()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("250us", 0.00025)],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations take us, ms, s, m, h or a bare number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "ten", "-1s", "5 sec"])
def test_bad_durations(text: str) -> None:
    """Anything else is an error naming the accepted units."""
    with pytest.raises(SLOError):
        parse_duration(text)
