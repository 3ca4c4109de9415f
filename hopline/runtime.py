"""What every hopline process shares: exit codes, the one-line error, the event loop.

A shared library module (components and the command import it; it imports only
:mod:`hopline.wire`):

* the exit codes (0 ok, 1 failed, 2 usage, 3 could not start, 4 loadtest no
  connection, 130 interrupted) and :func:`fail`, which prints ``hopline: error: ...``;
* :func:`run`, the event loop (uvloop when installed; ``HOPLINE_LOOP=asyncio`` opts out);
* :func:`run_until_signalled`: start a service, wait for SIGINT/SIGTERM, stop it. The
  first signal starts a clean shutdown; a second one forces an immediate exit (130).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from hopline.wire.defaults import INTERRUPTED_EXIT_CODE

__all__ = [
    "FAILED",
    "INTERRUPTED",
    "NO_CONNECTION",
    "OK",
    "STARTUP_FAILURE",
    "USAGE",
    "fail",
    "run",
    "run_until_signalled",
]

OK = 0
FAILED = 1  # the run completed but did not succeed (error reply, threshold missed)
USAGE = 2  # bad options or arguments (click's own code)
STARTUP_FAILURE = 3  # could not start: broker or gateway unreachable, port taken
NO_CONNECTION = 4  # load test: not a single connection could be made
INTERRUPTED = INTERRUPTED_EXIT_CODE  # Ctrl-C (128 + SIGINT)


def fail(message: str, code: int) -> NoReturn:
    """Print ``hopline: error: <message>`` as one line on stderr and exit with ``code``."""
    click.echo(f"hopline: error: {message}", err=True)
    sys.exit(code)


T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (``HOPLINE_LOOP=asyncio`` opts out).

    uvloop's libuv transports make the per-frame socket writes and reads that
    dominate the gateway's profile markedly cheaper than asyncio's selector loop.
    """
    loop_factory = None
    if os.environ.get("HOPLINE_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


async def run_until_signalled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    started: Callable[[], None] | None = None,
) -> None:
    """Await ``start()``, call ``started()``, wait for a signal, then await ``stop()``.

    Exceptions from ``start`` propagate (after ``stop`` is not called: nothing started).
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal() -> None:
        if stop_requested.is_set():
            os._exit(INTERRUPTED)
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await start()
        # Everything allocated at start-up lives as long as the process: move it out of
        # the collector's way, and collect the young generation less often (the hot path
        # allocates many short-lived objects). Measured with bench/run.py --quick: gateway
        # CPU per reply 117 -> 66-72 us with the default threshold -> 50,000, while the
        # open-loop p99 at 200 and 500 requests/s stayed at 4-5 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        if started is not None:
            started()
        await stop_requested.wait()
        await stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
