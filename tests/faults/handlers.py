"""Handlers for processors run as subprocesses by the fault tests (``--handler tests.faults...``).

They leave a trace: with ``HOPLINE_FAULTS_LOG`` set, every call appends
``<pid> <payload>`` to that file (one short ``O_APPEND`` write, so lines from
several processes never interleave).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator


def _trace(payload: str | bytes) -> None:
    path = os.environ.get("HOPLINE_FAULTS_LOG")
    if path:
        text = payload if isinstance(payload, str) else payload.decode(errors="replace")
        with open(path, "a") as log:
            log.write(f"{os.getpid()} {text}\n")


async def slow_echo(payload: str | bytes) -> str | bytes:
    """Trace the call, wait ``HOPLINE_FAULTS_DELAY`` seconds (default 0.05), echo."""
    _trace(payload)
    await asyncio.sleep(float(os.environ.get("HOPLINE_FAULTS_DELAY", "0.05")))
    return payload


def crash_on_poison(payload: str | bytes) -> str | bytes:
    """Kill the whole process (no cleanup, no ack) for 'poison'; echo anything else."""
    _trace(payload)
    if payload == "poison":
        os._exit(3)
    return payload


def sync_slow_echo(payload: str | bytes) -> str | bytes:
    """Like :func:`slow_echo`, but blocking: batch items run one after another."""
    _trace(payload)
    time.sleep(float(os.environ.get("HOPLINE_FAULTS_DELAY", "0.05")))
    return payload


async def slow_words(payload: str | bytes) -> AsyncIterator[str]:
    """Trace the call, then stream ``<payload>:0,`` .. ``<payload>:19,``, one per delay."""
    _trace(payload)
    delay = float(os.environ.get("HOPLINE_FAULTS_DELAY", "0.05"))
    for i in range(STREAM_CHUNKS):
        await asyncio.sleep(delay)
        yield f"{payload!s}:{i},"


STREAM_CHUNKS = 20
