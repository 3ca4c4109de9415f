"""Handlers for bench/handlers.py (``--handler bench_handlers:<name>``, bench/ on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator


def sleep100(payload: str | bytes) -> str | bytes:
    """A blocking handler: 100 ms of time.sleep (stands in for a blocking I/O call)."""
    time.sleep(0.1)
    return payload


async def burst100(payload: str | bytes) -> AsyncIterator[str]:
    """100 chunks as fast as the processor takes them."""
    for i in range(100):
        yield f"{i},"


async def paced20(payload: str | bytes) -> AsyncIterator[str]:
    """20 chunks 20 ms apart (a producer such as a model emitting tokens): 400 ms in all."""
    for i in range(20):
        await asyncio.sleep(0.02)
        yield f"{i},"


async def slow60(payload: str | bytes) -> str | bytes:
    """'slow' takes 60 s (issue 15's slow request); anything else is answered at once."""
    if payload == "slow":
        await asyncio.sleep(60)
    return payload


def slow60_sync(payload: str | bytes) -> str | bytes:
    """Like slow60, blocking its thread (its result is abandoned at the deadline)."""
    if payload == "slow":
        time.sleep(60)
    return payload
