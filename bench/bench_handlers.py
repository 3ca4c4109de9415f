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
