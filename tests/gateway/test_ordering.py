"""The per-socket window and reply order (gateway.ordering.Flow), without a network.

In the style of websockets' tests/test_protocol.py: drive the pure object with
events and check what it lets through.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ordering import Flow


def test_window_counts_frames_until_sent() -> None:
    flow = Flow(window=2)
    assert flow.readable
    flow.admit(10)
    flow.admit(10)
    assert not flow.readable
    assert flow.sent(10) is True
    assert flow.readable
    assert (flow.in_flight, flow.in_flight_bytes) == (1, 10)


def test_byte_cap_stops_reading_before_the_window_does() -> None:
    flow = Flow(window=100, max_bytes=1000)
    flow.admit(600)
    assert flow.readable  # checked before a frame is read: may overshoot by one frame
    flow.admit(600)
    assert not flow.readable
    assert flow.sent(600) is True
    assert flow.in_flight_bytes == 600


def test_zero_max_bytes_means_no_byte_cap() -> None:
    flow = Flow(window=3, max_bytes=0)
    flow.admit(10**12)
    assert flow.readable


def test_refused_frames_count_in_the_window() -> None:
    flow = Flow(window=1)
    flow.admit(0)
    assert not flow.readable
    flow.sent(0)
    assert flow.readable


def test_results_are_delivered_in_request_order() -> None:
    flow = Flow(window=10)
    a, b, c = (flow.slot(1, 0.0) for _ in range(3))
    assert flow.resolve(c, "C") == []
    assert flow.resolve(b, "B") == []
    assert [s.result for s in flow.resolve(a, "A")] == ["A", "B", "C"]
    assert flow.waiting == 0


def test_a_slot_in_the_middle_waits_for_the_head() -> None:
    flow = Flow(window=10)
    a, b = flow.slot(1, 0.0), flow.slot(1, 0.0)
    assert flow.resolve(a, "A")[0] is a
    c = flow.slot(1, 0.0)
    assert flow.resolve(c, "C") == []
    assert [s.result for s in flow.resolve(b, "B")] == ["B", "C"]


def test_clear_forgets_undelivered_slots() -> None:
    flow = Flow(window=10)
    flow.slot(1, 0.0)
    flow.clear()
    assert flow.waiting == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        Flow(window=0)
    with pytest.raises(ValueError):
        Flow(window=1, max_bytes=-1)


@given(st.permutations(range(12)), st.lists(st.integers(0, 5000), min_size=12, max_size=12))
def test_any_resolution_order_delivers_each_slot_once_in_order(
    order: list[int], sizes: list[int]
) -> None:
    flow = Flow(window=12, max_bytes=0)
    slots = [flow.slot(size, float(i)) for i, size in enumerate(sizes)]
    delivered = []
    for i in order:
        for slot in flow.resolve(slots[i], i):
            delivered.append(slot.result)
            flow.sent(slot.size)
    assert delivered == list(range(12))
    assert (flow.in_flight, flow.in_flight_bytes, flow.waiting) == (0, 0, 0)
