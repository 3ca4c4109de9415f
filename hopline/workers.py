"""``--workers N``: N gateway processes on one port, under one supervisor process.

Usage (from the ``gateway`` and ``up`` commands)::

    code = serve_workers(settings, 4, on_ready=print_banner)   # blocks; 0 after a clean stop

Contract:

* Each worker is a forked child running a whole :class:`~gateway.server.Gateway`
  (its own broker connections, its own exclusive reply queue, its own metrics).
  Where the platform has ``SO_REUSEPORT`` each worker binds the port itself with
  ``reuse_port`` and the kernel spreads new connections over the workers (by a
  hash of the connection's addresses); elsewhere the supervisor opens one
  listening socket that every worker accepts from.
* ``port`` 0 is resolved once by the supervisor, so every worker listens on the
  same port.
* Start-up: ``on_ready(port)`` is called once every worker listens. A worker that
  fails or exits during start-up stops the others; :class:`WorkerStartError`
  carries its one-line reason (the command exits 3).
* SIGINT/SIGTERM to the supervisor: every worker drains (``Gateway.stop``) and
  the call returns 0 when they all stopped cleanly after SIGTERM, 130 after SIGINT
  (Ctrl-C, as for every hopline command). A second signal is passed on
  too, which makes the workers exit at once (130).
* A worker that dies while serving stops the others, and the call returns 1,
  so a process manager restarts the whole gateway.
* Workers run in their own process group (a terminal's Ctrl-C reaches only the
  supervisor, which passes one SIGTERM on), and stop on their own when the
  supervisor disappears (their end of a pipe to it closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from gateway.config import GatewaySettings
from gateway.server import Gateway, WorkerIdentity
from hopline.runtime import INTERRUPTED, run, run_until_signalled
from hopline.wire.connect import BrokerUnavailable

__all__ = ["REUSE_PORT", "WorkerStartError", "serve_workers"]

REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
STARTUP_FAILED = 3

AfterStart = Callable[[Gateway], Awaitable[None]]


class WorkerStartError(RuntimeError):
    """A worker could not start; the message is one line for the user."""


def serve_workers(
    settings: GatewaySettings,
    workers: int,
    on_ready: Callable[[int], None],
    after_start: AfterStart | None = None,
) -> int:
    """Run ``workers`` gateway processes on ``settings.port`` until SIGINT/SIGTERM.

    ``after_start(gateway)``, if given, runs in every worker once it listens and
    before it reports ready (``hopline up`` waits for its processors there).

    Returns:
        0 when every worker stopped cleanly after SIGTERM (130 after SIGINT), 1 when one died while
        serving (the others were stopped), 130 when a worker was forced to exit.

    Raises:
        WorkerStartError: a worker failed during start-up (the others were stopped).
        OSError: the port could not be bound.
    """
    ctx = multiprocessing.get_context("fork")
    shared, port = _listen_socket(settings)
    settings = dataclasses.replace(settings, port=port)
    signals: list[int] = []
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
    old_handlers = {
        sig: signal.signal(sig, lambda s, _f: signals.append(s))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    procs: list[Any] = []
    pipes: list[Connection] = []
    try:
        for index in range(workers):
            ours, theirs = ctx.Pipe()
            identity = WorkerIdentity(index, workers, None if REUSE_PORT else shared)
            # What the child must close: the supervisor's ends and sockets it inherits.
            inherited: list[Connection | socket.socket] = [*pipes, wake_r, wake_w, ours]
            if shared is not None and REUSE_PORT:
                inherited.append(shared)
            proc = ctx.Process(
                target=_worker_main,
                args=(settings, identity, theirs, after_start, inherited),
                name=f"hopline-gateway-{index}",
                daemon=False,
            )
            proc.start()
            theirs.close()
            procs.append(proc)
            pipes.append(ours)
        _await_ready(procs, pipes, wake_r, signals)
        if shared is not None and REUSE_PORT:
            shared.close()  # it only held the port number; it never listened
            shared = None
        if signals:  # interrupted during start-up
            _stop_all(procs, wake_r, signals)
            return INTERRUPTED
        on_ready(port)
        while not signals:
            ready = wait([wake_r, *(p.sentinel for p in procs)])
            if signals:
                break
            _drain(wake_r)
            dead = [(i, p) for i, p in enumerate(procs) if p.sentinel in ready]
            if dead:
                index, proc = dead[0]
                print(
                    f"hopline: error: gateway worker {index} (pid {proc.pid}) exited with code "
                    f"{proc.exitcode}; stopping the others",
                    file=sys.stderr,
                )
                _stop_all(procs, wake_r, signals)
                return 1
        code = _stop_all(procs, wake_r, signals)
        return INTERRUPTED if code == 0 and signals[0] == signal.SIGINT else code
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
        for pipe in pipes:
            pipe.close()
        if shared is not None:
            shared.close()
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        wake_r.close()
        wake_w.close()


def _listen_socket(settings: GatewaySettings) -> tuple[socket.socket | None, int]:
    """The port every worker uses, and the supervisor's socket (see the module docstring).

    With ``SO_REUSEPORT`` the socket is bound (never listening: it gets no
    connections) only when ``port`` is 0, to pick the port; without it, it is the
    shared listening socket.
    """
    if REUSE_PORT and settings.port != 0:
        return None, settings.port
    host = None if settings.host in ("", "0.0.0.0") else settings.host
    family = socket.AF_INET
    if host is not None:
        family = socket.getaddrinfo(host, settings.port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if REUSE_PORT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", settings.port))
        if not REUSE_PORT:
            sock.listen(1024)
            sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock, sock.getsockname()[1]


def _await_ready(
    procs: list[Any], pipes: list[Connection], wake: socket.socket, signals: list[int]
) -> None:
    """Until every worker said ``ready``; WorkerStartError (others stopped) if one did not."""
    waiting = dict(enumerate(pipes))
    while waiting and not signals:
        ready = wait([wake, *waiting.values(), *(procs[i].sentinel for i in waiting)])
        _drain(wake)
        for index, pipe in list(waiting.items()):
            failure = None
            if pipe in ready or procs[index].sentinel in ready:
                try:
                    kind, detail = pipe.recv()
                except (EOFError, OSError):
                    procs[index].join(1)
                    kind, detail = "failed", f"exited with code {procs[index].exitcode}"
                if kind == "ready":
                    del waiting[index]
                    continue
                failure = f"gateway worker {index} could not start: {detail}"
            if failure is not None:
                _stop_all(procs, wake, signals)
                raise WorkerStartError(failure)


def _stop_all(procs: list[Any], wake: socket.socket, signals: list[int]) -> int:
    """SIGTERM every live worker, pass further signals on, wait; the exit code of the lot."""
    passed = 0
    for proc in procs:
        if proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    passed = len(signals)
    while alive := [p for p in procs if p.is_alive()]:
        # One list for the test and the wait: a worker that exits between two
        # is_alive() calls would otherwise leave wait() with only `wake`, forever.
        wait([wake, *(p.sentinel for p in alive)])
        _drain(wake)
        if len(signals) > passed:  # a second Ctrl-C: the workers exit at once
            passed = len(signals)
            for proc in procs:
                if proc.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGTERM)
    codes = [p.exitcode for p in procs]
    if any(c == INTERRUPTED for c in codes):
        return INTERRUPTED
    return 0 if all(c == 0 for c in codes) else 1


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while sock.recv(512):
            pass


def _worker_main(
    settings: GatewaySettings,
    identity: WorkerIdentity,
    pipe: Connection,
    after_start: AfterStart | None,
    inherited: list[Connection | socket.socket],
) -> None:
    """A worker process: run one gateway until SIGTERM (or the supervisor is gone)."""
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)  # the inherited one is the supervisor's
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    for item in inherited:
        item.close()
    gw = Gateway(settings, identity)

    async def start() -> None:
        await gw.start()
        if after_start is not None:
            await after_start(gw)
        loop = asyncio.get_running_loop()
        # The supervisor holds the other end: EOF means it is gone, so drain and stop.
        loop.add_reader(pipe.fileno(), _supervisor_gone, loop, pipe)

    def started() -> None:
        pipe.send(("ready", gw.port))

    try:
        # A second signal exits at once, quietly: the supervisor says "interrupted".
        run(run_until_signalled(start, gw.stop, started, forced=_exit_quietly))
    except BrokerUnavailable as exc:
        _report_failure(pipe, str(exc))
    except OSError as exc:
        _report_failure(
            pipe, f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        )
    except Exception as exc:  # anything else during start-up: one line, not a traceback
        _report_failure(pipe, f"{type(exc).__name__}: {exc}")
    sys.exit(0)


def _exit_quietly() -> None:
    os._exit(INTERRUPTED)


def _report_failure(pipe: Connection, message: str) -> None:
    with contextlib.suppress(OSError):
        pipe.send(("failed", message))
    sys.exit(STARTUP_FAILED)


def _supervisor_gone(loop: asyncio.AbstractEventLoop, pipe: Connection) -> None:
    try:
        pipe.recv()
    except (EOFError, OSError):
        loop.remove_reader(pipe.fileno())
        os.kill(os.getpid(), signal.SIGTERM)
