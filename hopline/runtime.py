"""What every hopline process shares: exit codes, the one-line error, the event loop.

A shared library module (components and the command import it; it imports only
:mod:`hopline.wire`):

* the exit codes (0 ok, 1 failed, 2 usage, 3 could not start, 4 loadtest no
  connection, 130 interrupted) and :func:`fail`, which prints ``hopline: error: ...``;
* Ctrl-C: every command that ends because of SIGINT says :data:`INTERRUPTED_LINE`
  (``hopline: interrupted``) once on stderr and exits 130, through :func:`interrupted`
  (or :func:`exit_with`, or :func:`interrupted_now` where no clean-up may run). A
  process a command started itself (gateway workers, ``up``'s processors) stays quiet:
  the command speaks for it;
* :func:`run`, the event loop (uvloop when installed; ``HOPLINE_LOOP=asyncio`` opts out);
* :func:`run_until_signalled`: start a service, wait for SIGINT/SIGTERM, stop it. The
  first signal starts a clean shutdown; a second one forces an immediate exit (130).
  It returns the signal, so that a command exits 130 after Ctrl-C and 0 after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
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
    "INTERRUPTED_LINE",
    "NO_CONNECTION",
    "OK",
    "STARTUP_FAILURE",
    "USAGE",
    "exit_with",
    "fail",
    "interrupted",
    "interrupted_now",
    "listen_error",
    "run",
    "run_until_signalled",
]

OK = 0
FAILED = 1  # the run completed but did not succeed (error reply, threshold missed)
USAGE = 2  # bad options or arguments (click's own code)
STARTUP_FAILURE = 3  # could not start: broker or gateway unreachable, port taken
NO_CONNECTION = 4  # load test: not a single connection could be made
INTERRUPTED = INTERRUPTED_EXIT_CODE  # Ctrl-C (128 + SIGINT)
INTERRUPTED_LINE = "hopline: interrupted"  # what every command says on stderr after Ctrl-C


def listen_error(host: str, port: int, exc: OSError) -> str:
    """One line for a gateway that cannot listen, suggesting --port when the port is taken."""
    hint = "; pick another with --port" if exc.errno == errno.EADDRINUSE else ""
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}"


def fail(message: str, code: int) -> NoReturn:
    """Print ``hopline: error: <message>`` as one line on stderr and exit with ``code``."""
    click.echo(f"hopline: error: {message}", err=True)
    sys.exit(code)


def interrupted() -> NoReturn:
    """End the command after Ctrl-C: :data:`INTERRUPTED_LINE` on stderr, exit 130."""
    click.echo(INTERRUPTED_LINE, err=True)
    sys.exit(INTERRUPTED)


def interrupted_now() -> NoReturn:
    """:func:`interrupted` from a signal handler: one ``write(2)``, then ``os._exit(130)``.

    Nothing else runs (no ``finally``, no atexit, no flush of buffered output).
    """
    with contextlib.suppress(OSError):
        os.write(2, f"{INTERRUPTED_LINE}\n".encode())
    os._exit(INTERRUPTED)


def exit_with(code: int) -> NoReturn:
    """Exit with ``code``; 130 (a command that stopped after Ctrl-C) via :func:`interrupted`."""
    if code == INTERRUPTED:
        interrupted()
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
    forced: Callable[[], None] | None = None,
) -> signal.Signals:
    """Await ``start()``, call ``started()``, wait for SIGINT/SIGTERM, await ``stop()``.

    Returns the signal that ended the run (the command exits 130 for SIGINT, 0 for
    SIGTERM). A signal during ``start()`` cancels it, runs ``stop()`` and returns at
    once (``started`` is not called). A second signal calls ``forced()`` (which must
    be quick and synchronous: kill what must not outlive the process; it may exit
    the process itself, quietly) and then exits at once with :func:`interrupted_now`.
    Exceptions from ``start`` propagate after ``stop()``.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            if forced is not None:
                forced()
            interrupted_now()
        received.append(sig)
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        starting = asyncio.ensure_future(start())
        waiting = asyncio.ensure_future(stop_requested.wait())
        try:
            await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if not starting.done():  # a signal came first
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await stop()
            return received[0]
        if starting.exception() is not None:
            with contextlib.suppress(Exception):
                await stop()
            starting.result()
        # Everything allocated at start-up lives as long as the process: move it out of
        # the collector's way, and collect the young generation less often (the hot path
        # allocates many short-lived objects). Measured with bench/run.py --quick: gateway
        # CPU per reply 117 -> 66-72 us with the default threshold -> 50,000, while the
        # open-loop p99 at 200 and 500 requests/s stayed at 4-5 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        if started is not None and not received:
            started()
        await stop_requested.wait()
        await stop()
        return received[0]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
