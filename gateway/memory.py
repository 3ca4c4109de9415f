"""Give freed memory back to the operating system after a burst.

CPython returns small objects to its own arenas and large buffers to glibc's
malloc, which keeps freed heap pages mapped: after a burst of large requests the
gateway's resident size stays at its peak although nothing is pending. glibc's
``malloc_trim(0)`` releases every free page of the heap (``MADV_DONTNEED``), so the
resident size falls back to what is in use. It walks the heap (a millisecond or so
for a few hundred MiB), so :class:`MemoryReturner` calls it at most once per check,
only when the resident size grew by ``slack`` since the last trim, or when the
pending work has at least halved since then. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

__all__ = ["MemoryReturner", "resident_bytes"]

DEFAULT_SLACK = 32 * 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process' resident set size in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _glibc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class MemoryReturner:
    """Decides when to trim the heap; call :meth:`maybe_return` periodically.

    Args:
        slack: growth of the resident size, in bytes, that triggers a trim.
        trim: the trim function (glibc's ``malloc_trim(0)`` by default; None: none).
        rss: reads the resident size (``/proc/self/statm`` by default).
    """

    def __init__(
        self,
        slack: int = DEFAULT_SLACK,
        trim: Callable[[], None] | None = None,
        rss: Callable[[], int] = resident_bytes,
    ) -> None:
        self.slack = slack
        self._trim = trim if trim is not None else _glibc_trim()
        self._rss = rss
        self._floor = rss()
        self._pending_at_trim = 0
        self.trims = 0

    def maybe_return(self, pending: int) -> bool:
        """Trim if the heap grew or the work drained since the last trim; True if it did."""
        if self._trim is None:
            return False
        rss = self._rss()
        grew = rss > self._floor + self.slack
        drained = pending * 2 < self._pending_at_trim
        if not (grew or drained):
            return False
        self._trim()
        self.trims += 1
        self._floor = self._rss()
        self._pending_at_trim = pending
        return True
