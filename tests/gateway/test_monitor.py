"""The queue monitor's decisions, fed samples and a clock, without a network (gateway/monitor.py).

What a sample does over AMQP and the management API is covered end to end against
the broker (tests/gateway/test_http.py's /health and /stats, test_management.py, and
tests/cluster for a queue on a dead node). Here: when the gateway batches, when the
input queues count as unattended, what ``/health`` is told and what ``/stats`` and
``/metrics`` report.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.monitor import QueueMonitor, QueueSample
from hopline.wire.amqp import QueueTopology

QUEUE = "work"
BATCH = "work.batch"


def monitor(**settings: Any) -> QueueMonitor:
    """A monitor of the input queue ``work`` (settings as ``GatewaySettings`` takes them)."""
    settings.setdefault("topology", QueueTopology(input_queue=QUEUE))
    return QueueMonitor(GatewaySettings(**settings), GatewayMetrics())


def counts(
    plain_consumers: int = 0, batch_consumers: int = 0, ready: tuple[int, int] = (0, 0)
) -> tuple[QueueSample, QueueSample]:
    """AMQP samples of the plain and the batch input queue."""
    plain = QueueSample(QUEUE, ready[0], plain_consumers)
    return plain, QueueSample(BATCH, ready[1], batch_consumers)


def gauge(m: QueueMonitor, queue: str) -> float:
    """The ready-messages gauge of ``queue`` as /metrics shows it."""
    text = m.metrics.render().decode()
    found = re.search(
        rf'^hopline_queue_ready_messages\{{queue="{re.escape(queue)}"\}} (\S+)$', text, re.M
    )
    assert found, text
    return float(found.group(1))


def test_topology_names_match_the_samples() -> None:
    """The batch queue's name is what these tests feed (the topology derives it)."""
    assert QueueTopology(input_queue=QUEUE).batch_queue == BATCH


# Batching


def test_auto_batches_while_the_batch_queue_has_a_consumer() -> None:
    """auto: off before the first sample, on with a batch consumer, off when it leaves."""
    m = monitor()
    assert m.batching_active is False
    m.observe(*counts(batch_consumers=2), now=1.0)
    assert m.batching_active is True
    m.observe(*counts(plain_consumers=3), now=2.0)  # only plain consumers: no batches
    assert m.batching_active is False


def test_auto_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    """One 'batching active/inactive' line per change, none for a sample that changes nothing."""
    m = monitor()
    with caplog.at_level(logging.INFO, logger="gateway.monitor"):
        for consumers in (0, 1, 1, 0, 0):
            m.observe(*counts(batch_consumers=consumers), now=0.0)
    assert [r.getMessage() for r in caplog.records] == ["batching active", "batching inactive"]


@pytest.mark.parametrize(("mode", "active"), [("on", True), ("off", False)])
def test_on_and_off_ignore_the_consumers(mode: str, active: bool) -> None:
    """--batching on/off: fixed from the start, whatever the samples say."""
    m = monitor(batching=mode)
    assert m.batching_active is active
    for consumers in (1, 0, 1):
        m.observe(*counts(batch_consumers=consumers), now=0.0)
        assert m.batching_active is active


def test_a_queue_length_cap_never_batches() -> None:
    """With --max-queue-length every request is its own message: auto stays off."""
    m = monitor(topology=QueueTopology(input_queue=QUEUE, max_length=10))
    m.observe(*counts(batch_consumers=1), now=0.0)
    assert m.batching_active is False


# Unattended input queues and /health


def test_unattended_counts_from_the_first_sample_without_a_consumer() -> None:
    """The grace runs from the first sample with no consumer on either queue; later such
    samples do not restart it."""
    m = monitor(no_consumer_grace=5.0)
    assert not m.unattended(5.0, now=1000.0)  # before any sample: not unattended
    m.observe(*counts(), now=100.0)
    m.observe(*counts(), now=103.0)
    assert m.unattended_since == 100.0
    assert not m.unattended(5.0, now=104.9)
    assert m.unattended(5.0, now=105.0)
    assert m.input_problem(now=104.9) is None
    assert m.input_problem(now=105.0) == ("no processor has consumed the input queues for over 5 s")


@pytest.mark.parametrize("consumers", [(1, 0), (0, 1)])
def test_a_consumer_on_either_queue_attends_them(consumers: tuple[int, int]) -> None:
    """A consumer on the plain or the batch queue ends the unattended time at once; the
    next sample without one starts a new grace."""
    m = monitor(no_consumer_grace=5.0)
    m.observe(*counts(), now=100.0)
    m.observe(*counts(*consumers), now=200.0)
    assert m.unattended_since is None
    assert m.input_problem(now=300.0) is None
    m.observe(*counts(), now=300.0)
    assert not m.unattended(5.0, now=304.0)
    assert m.unattended(5.0, now=305.0)


def test_a_grace_of_zero_never_makes_them_unattended() -> None:
    """--no-consumer-grace 0: requests wait for their deadline, /health stays 200."""
    m = monitor(no_consumer_grace=0.0)
    m.observe(*counts(), now=0.0)
    assert not m.unattended(0.0, now=1e9)
    assert m.input_problem(now=1e9) is None


def test_a_failed_declare_is_the_problem_until_one_succeeds() -> None:
    """The declare's error names the queue and wins over the consumer check; a successful
    declare clears it."""
    m = monitor(no_consumer_grace=5.0)
    m.observe(*counts(), now=0.0)
    m.unreachable(RuntimeError("NOT_FOUND - home node 'rabbit@b' is down"))
    problem = "input queue 'work' unreachable: NOT_FOUND - home node 'rabbit@b' is down"
    assert m.input_problem(now=1.0) == problem
    assert m.input_problem(now=100.0) == problem
    m.reachable()
    assert m.input_problem(now=1.0) is None
    assert m.input_problem(now=100.0) == "no processor has consumed the input queues for over 5 s"


# What /stats and /metrics report


def test_record_keeps_the_latest_samples_by_name() -> None:
    """/stats shows the latest samples, their source and time; a new sample replaces all."""
    m = monitor()
    assert (m.queues, m.source, m.sampled_at) == ({}, "amqp", None)
    management = [
        QueueSample(QUEUE, 7, 1, unacked=3, type="quorum", leader="rabbit@a"),
        QueueSample(BATCH, 0, 2, unacked=0, type="quorum", leader="rabbit@a"),
    ]
    m.record(management, "management", 1_700_000_000.0)
    assert m.queues == {QUEUE: management[0], BATCH: management[1]}
    assert (m.source, m.sampled_at) == ("management", 1_700_000_000.0)
    amqp = list(counts(ready=(1, 2)))
    m.record(amqp, "amqp", 1_700_000_005.0)
    assert m.queues == {QUEUE: amqp[0], BATCH: amqp[1]}
    assert (m.source, m.sampled_at) == ("amqp", 1_700_000_005.0)


def test_observe_sets_the_depth_gauges() -> None:
    """hopline_queue_ready_messages follows the ready counts of both input queues."""
    m = monitor()
    m.observe(*counts(ready=(12, 3)), now=0.0)
    assert (gauge(m, QUEUE), gauge(m, BATCH)) == (12.0, 3.0)
    m.observe(*counts(ready=(0, 0)), now=1.0)
    assert (gauge(m, QUEUE), gauge(m, BATCH)) == (0.0, 0.0)
