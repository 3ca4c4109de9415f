"""Handlers used by the tests through ``--handler tests.sample_handlers:<name>``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


def reverse(payload: str | bytes) -> str | bytes:
    """Reply with the payload reversed."""
    return payload[::-1]


def explode(payload: str | bytes) -> str | bytes:
    """Raise for 'boom', echo anything else."""
    if payload == "boom":
        raise RuntimeError("handler exploded")
    return payload


def wrong_type(payload: str | bytes) -> int:
    """Return something that is not a reply."""
    return 42


class Counting:
    """The default handler (append " world"), counting its runs: proof of what ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, payload: str | bytes) -> str | bytes:
        self.runs += 1
        return payload + (" world" if isinstance(payload, str) else b" world")


class Gate:
    """An async handler whose 'wait' requests finish only once 'release' arrives."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.seen = 0

    async def __call__(self, payload: str | bytes) -> str | bytes:
        self.seen += 1
        if payload == "release":
            self.released.set()
        else:
            await self.released.wait()
        return f"{payload!s} done"


class Barrier:
    """An async handler that answers nobody until ``parties`` requests are being handled."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def __call__(self, payload: str | bytes) -> str | bytes:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_here.set()
        await self.all_here.wait()
        return payload


class GatedWords:
    """Yields c0..c49 at once, waits for the gate, then yields c50..c99."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.closed = asyncio.Event()

    async def __call__(self, payload: str | bytes) -> AsyncIterator[str]:
        try:
            for i in range(100):
                if i == 50:
                    await self.gate.wait()
                yield f"{payload!s}{i},"
        finally:
            self.closed.set()


async def broken_stream(payload: str | bytes) -> AsyncIterator[str]:
    """Streams 'one', 'two', then fails (a processor_error after chunks went out)."""
    yield "one"
    yield "two"
    raise RuntimeError("broke mid-stream")
