"""HDR recording, exact merging and per-second aggregation (no network)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.stats import HIGHEST_US, Aggregate, Recorder, decode, latency_summary, new_histogram

_RECORDER = Recorder()
_REFERENCE = new_histogram()


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=HIGHEST_US))
def test_fast_index_matches_hdrhistogram(value: int) -> None:
    """Recorder's inline index arithmetic is the library's counts index."""
    assert _RECORDER.index(value) == _REFERENCE.get_counts_array_index(value)


@settings(deadline=None, max_examples=40)
@given(st.lists(st.integers(min_value=1, max_value=10_000_000), min_size=1, max_size=300))
def test_recorder_equals_record_value(values: list[int]) -> None:
    """Recording through Recorder gives the same histogram as record_value."""
    rec = Recorder()
    reference = new_histogram()
    for v in values:
        rec.record(v)
        reference.record_value(v)
    got = decode(rec.take())
    assert got.get_total_count() == len(values)
    assert latency_summary(got) == latency_summary(reference)


@settings(deadline=None, max_examples=40)
@given(
    st.lists(st.integers(min_value=1, max_value=60_000_000), max_size=200),
    st.lists(st.integers(min_value=1, max_value=60_000_000), max_size=200),
)
def test_merge_is_exact(a: list[int], b: list[int]) -> None:
    """Two workers' histograms merged give the percentiles of one histogram of all values."""
    agg = Aggregate()
    for worker, values in enumerate((a, b)):
        rec = Recorder()
        for v in values:
            rec.record(v)
        agg.add(worker, {"second": 0, "counters": {"sent": len(values)}, "hist": rec.take()})
    one = new_histogram()
    for v in a + b:
        one.record_value(v)
    assert latency_summary(agg.total) == latency_summary(one)
    assert agg.counters["sent"] == len(a) + len(b)


def test_take_clears_the_interval() -> None:
    """After take() the next interval starts empty."""
    rec = Recorder()
    rec.record(1000)
    assert decode(rec.take()).get_total_count() == 1
    assert decode(rec.take()).get_total_count() == 0


def test_values_beyond_an_hour_are_clamped() -> None:
    """A latency above the histogram range is recorded as the maximum, not lost."""
    rec = Recorder()
    rec.record(HIGHEST_US * 10)
    hist = decode(rec.take())
    assert hist.get_total_count() == 1


def test_series_fills_gaps_and_merges_workers() -> None:
    """Reports of several workers for the same second add up; missing seconds are zeros."""
    agg = Aggregate()
    for worker in (0, 1):
        rec = Recorder()
        rec.record(2000)
        agg.add(worker, {"second": 0, "counters": {"sent": 3, "ok": 3}, "hist": rec.take()})
    agg.add(0, {"second": 2, "counters": {"sent": 1, "timeout": 1}, "hist": Recorder().take()})
    series = agg.series()
    assert [(s["t"], s["sent"], s["ok"], s["errors"]) for s in series] == [
        (0, 6, 6, 0),
        (1, 0, 0, 0),
        (2, 1, 0, 1),
    ]
    assert series[0]["p50_ms"] == 2.0


def test_the_live_rate_counts_a_second_only_once_every_worker_reported_it() -> None:
    """Issue 14 row 7: with 2 worker processes at a steady rate, the progress line's rate
    is the whole rate, never the half that one worker's report makes of a new second."""
    from loadtest.progress import Progress
    from loadtest.runner import LoadSettings

    agg = Aggregate()
    progress = Progress(LoadSettings(url="ws://127.0.0.1:1/ws", duration=10.0), "quiet", None)

    def report(worker: int, second: int) -> None:
        rec = Recorder()
        for _ in range(2500):
            rec.record(1000)
        counters = {"sent": 2500, "ok": 2500}
        agg.add(worker, {"second": second, "counters": counters, "hist": rec.take(), "open": 1})

    rates = []
    for second in range(3):
        for worker in (0, 1):
            report(worker, second)
            rates.append(progress.line(agg).split(" · rate ")[1].split(" ")[0])
    assert rates[1:] == ["5000/s"] * 5
