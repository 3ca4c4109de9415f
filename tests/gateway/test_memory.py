"""When the gateway hands freed heap back to the OS (gateway/memory.py), with a fake heap."""

from __future__ import annotations

from gateway.memory import MemoryReturner, resident_bytes

MiB = 1024 * 1024


class Heap:
    def __init__(self) -> None:
        self.rss = 100 * MiB
        self.trims = 0

    def trim(self) -> None:
        self.trims += 1


def test_trims_when_the_heap_grew_or_work_drained() -> None:
    """A 32 MiB growth trims; a steady heap does not; pending halving after a burst trims."""
    heap = Heap()
    m = MemoryReturner(slack=32 * MiB, trim=heap.trim, rss=lambda: heap.rss)
    assert not m.maybe_return(pending=0)
    heap.rss += 40 * MiB
    assert m.maybe_return(pending=1000)
    assert not m.maybe_return(pending=900)
    assert m.maybe_return(pending=10)
    assert m.maybe_return(pending=0)
    assert not m.maybe_return(pending=0)
    assert heap.trims == 3


def test_reads_its_own_resident_size() -> None:
    """resident_bytes reads a plausible figure for this process."""
    assert 1 * MiB < resident_bytes() < 64 * 1024 * MiB
