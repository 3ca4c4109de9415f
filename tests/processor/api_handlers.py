"""Handlers for the handler-API tests (``--handler tests.processor.api_handlers:<name>``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from hopline.handler import BadRequest, Context

GATE = threading.Event()  # released by the test


def blocking(payload: str | bytes) -> str | bytes:
    """A plain function: 'block' blocks its thread until GATE is set; anything else echoes."""
    if payload == "block":
        GATE.wait(30)
    return payload


def with_context(payload: str | bytes, ctx: Context) -> str:
    """Describe the request's context."""
    remaining = ctx.remaining()
    return (
        f"{payload!s} corr={bool(ctx.correlation_id)} attempt={ctx.attempt} index={ctx.index} "
        f"deadline_ahead={remaining is not None and remaining > 0} "
        f"headers={'x-hopline-deadline-ms' in ctx.headers}"
    )


async def refuse(payload: str | bytes) -> str | bytes:
    """Refuse empty-looking requests as the caller's fault."""
    if payload in ("", "bad"):
        raise BadRequest("say something")
    if payload == "crash":
        raise KeyError("oops")
    return payload


def startup() -> None:
    """Fail when HOPLINE_TEST_STARTUP says so (checked by the exit-code test)."""
    if os.environ.get("HOPLINE_TEST_STARTUP") == "fail":
        raise ConnectionError("database at db:5432 refused the connection")
    _trace("startup")


async def shutdown() -> None:
    """Leave a trace (the test reads it after the processor stopped)."""
    await asyncio.sleep(0)
    _trace(f"shutdown {time.time():.0f}")


def _trace(line: str) -> None:
    marker = os.environ.get("HOPLINE_TEST_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(line + "\n")


def sleepy(payload: str | bytes) -> str | bytes:
    """Block 60 s (touching HOPLINE_TEST_MARKER first); the test gives up long before."""
    _trace("started")
    time.sleep(60)
    return payload
