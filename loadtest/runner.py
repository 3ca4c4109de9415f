"""Running a load test: split it over workers (in this process or in ``--procs`` processes).

``run(settings, on_report)`` plans the workers, raises the open-files limit,
starts them on a shared schedule (connect from ``start``, load from
``start + ramp_up``), passes every interval report to ``on_report`` as it arrives
and returns the merged :class:`RunResult`. With one process the worker runs on
an event loop in this process (uvloop when installed, like hopline's services:
``HOPLINE_LOOP=asyncio`` opts out); with more, each worker process gets a share of the
connections, of the rate and of the request budget, and reports over a pipe.
Histograms travel encoded and are added exactly (see :mod:`loadtest.stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait
from typing import Any

from hopline.runtime import run as run_loop
from loadtest.config import LoadSettings
from loadtest.messages import Codec
from loadtest.stats import Aggregate, HdrHistogram, decode, merge_counts, new_histogram
from loadtest.worker import NS, Worker, WorkerPlan

__all__ = ["RunError", "RunResult", "raise_open_files_limit", "run"]

FDS_PER_PROCESS = 64  # files a worker needs besides its sockets
READY_TIMEOUT = 60.0  # seconds for a worker process to start
START_DELAY = 0.05  # seconds between "go" and the first connection attempt

OnReport = Callable[[Aggregate], None]
Collect = Callable[[int, dict[str, Any]], None]


class RunError(RuntimeError):
    """The run could not be carried out (a worker process died, ...)."""


@dataclass
class RunResult:
    """Everything measured, merged over workers."""

    settings: LoadSettings
    aggregate: Aggregate
    connect_hist: HdrHistogram = field(default_factory=new_histogram)
    first_chunk_hist: HdrHistogram = field(default_factory=new_histogram)
    streamed: int = 0  # replies that came in more than one frame (chunks)
    chunks: int = 0  # frames of those replies
    connect_failures: dict[str, int] = field(default_factory=dict)
    opened: int = 0
    max_open: int = 0
    drops: int = 0
    reconnects: int = 0
    elapsed: float = 0.0  # seconds from the start of the load to the end of sending or the
    # last outcome, whichever is later
    interrupted: bool = False
    started_at: float = 0.0  # wall clock (epoch seconds)

    @property
    def connected(self) -> bool:
        return self.opened > 0


def raise_open_files_limit(needed: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` if possible.

    Returns:
        ``None`` when the limit is enough, else a one-line warning saying how many
        files are allowed and how to raise the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"open-files hard limit is {hard} but each worker process needs about {needed} "
            f"for its connections; raise it ('ulimit -Hn {needed}' as root, or nofile in "
            "/etc/security/limits.conf) or use more --procs; connections beyond the limit "
            "will fail with 'too many open files'"
        )
    return None


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plans(settings: LoadSettings, start_ns: int) -> list[WorkerPlan]:
    """The worker plans of a run whose first connection attempt is at ``start_ns``."""
    procs = max(1, min(settings.procs, settings.connections))
    conns = split(settings.connections, procs)
    budgets: list[int | None] = (
        split(settings.requests, procs) if settings.requests is not None else [None] * procs
    )
    load_ns = start_ns + int(settings.ramp_up * NS)
    end_ns = None if settings.duration is None else load_ns + int(settings.duration * NS)
    codec = Codec.build(settings.protocol, settings.expect, settings.message)
    out = []
    for i in range(procs):
        ledger = settings.ledger
        if ledger and procs > 1:
            ledger = f"{ledger}.{i}"  # joined into settings.ledger at the end
        out.append(
            WorkerPlan(
                worker=i,
                url=settings.url,
                codec=codec,
                connections=conns[i],
                in_flight=settings.in_flight,
                think=settings.think,
                rate=settings.rate * conns[i] / settings.connections if settings.rate else None,
                requests=budgets[i],
                timeout=settings.timeout,
                connect_timeout=settings.connect_timeout,
                start_ns=start_ns,
                load_ns=load_ns,
                end_ns=end_ns,
                ledger_path=ledger,
                ledger_format=settings.ledger_format,
                token=settings.token,
            )
        )
    return out


def run(settings: LoadSettings, on_report: OnReport | None = None) -> RunResult:
    """Run the load test; ``on_report(aggregate)`` is called after every interval report.

    Ctrl-C stops sending; outstanding requests still drain and the result is
    marked ``interrupted``.

    Raises:
        RunError: a worker process failed to start or died.
    """
    result = RunResult(settings, Aggregate(), started_at=time.time())
    procs = max(1, min(settings.procs, settings.connections))
    finals: list[dict[str, Any]] = []

    def collect(worker: int, report: dict[str, Any]) -> None:
        result.aggregate.add(worker, report)
        if report.get("final"):
            finals.append(report)
        if on_report is not None:
            on_report(result.aggregate)

    load_ns = 0
    if procs == 1:
        load_ns = _run_here(settings, collect)
    else:
        load_ns = _run_processes(settings, procs, collect)
    _merge_finals(result, finals, load_ns)
    if settings.ledger and procs > 1:
        _join_ledgers(settings.ledger, procs)
    return result


def _merge_finals(result: RunResult, finals: list[dict[str, Any]], load_ns: int) -> None:
    result.connect_failures = merge_counts(f["connect_failures"] for f in finals)
    for f in finals:
        hist = decode(f["connect_hist"])
        if hist.get_total_count():
            result.connect_hist.add(hist)
        first = decode(f["first_chunk_hist"])
        if first.get_total_count():
            result.first_chunk_hist.add(first)
        result.chunks += f["chunks"]
        result.streamed += f["streamed"]
        result.opened += f["opened"]
        result.max_open += f["max_open"]
        result.drops += f["drops"]
        result.reconnects += f["reconnects"]
        result.interrupted = result.interrupted or f["stopped"]
    last = [f["last_done_ns"] for f in finals if f["last_done_ns"] is not None]
    if last:
        result.elapsed = max(0.0, (max(last) - load_ns) / NS)


def _run_here(settings: LoadSettings, collect: Collect) -> int:
    start_ns = time.monotonic_ns() + int(START_DELAY * NS)
    (plan,) = plans(settings, start_ns)
    warning = raise_open_files_limit(plan.connections + FDS_PER_PROCESS)
    if warning:
        _warn(warning)

    async def main() -> None:
        worker = Worker(plan, lambda report: collect(0, report))
        loop = asyncio.get_running_loop()
        installed = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, worker.request_stop)
            installed = True
        try:
            await worker.run()
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    run_loop(main())
    return plan.load_ns


def _run_processes(settings: LoadSettings, procs: int, collect: Collect) -> int:
    ctx = multiprocessing.get_context("spawn")
    draft = plans(settings, 0)
    warning = raise_open_files_limit(max(p.connections for p in draft) + FDS_PER_PROCESS)
    if warning:
        _warn(warning)
    pipes: list[Pipe] = []
    children = []
    for plan in draft:
        parent_end, child_end = ctx.Pipe()
        child = ctx.Process(target=_child_main, args=(child_end, plan), daemon=True)
        child.start()
        child_end.close()
        pipes.append(parent_end)
        children.append(child)
    previous = signal.getsignal(signal.SIGINT)
    stop_sent = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal stop_sent
        if stop_sent:  # a second Ctrl-C: give up
            raise KeyboardInterrupt
        stop_sent = True
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        previous = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for i, pipe in enumerate(pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RunError(f"worker process {i} did not start within {READY_TIMEOUT:g} s")
            pipe.recv()  # ("ready",)
        start_ns = time.monotonic_ns() + int(START_DELAY * NS)
        for pipe in pipes:
            pipe.send(("go", start_ns))
        live = dict(enumerate(pipes))
        while live:
            for ready in wait(list(live.values()), timeout=0.5):
                index = next(i for i, p in live.items() if p is ready)
                try:
                    message = ready.recv()
                except EOFError:
                    code = children[index].exitcode
                    raise RunError(f"worker process {index} died (exit code {code})") from None
                if message[0] == "report":
                    collect(index, message[1])
                    if message[1].get("final"):
                        del live[index]
                elif message[0] == "error":
                    raise RunError(f"worker process {index} failed: {message[1]}")
        return start_ns + int(settings.ramp_up * NS)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
        for pipe in pipes:
            pipe.close()


def _child_main(pipe: Pipe, draft: WorkerPlan) -> None:
    """Entry point of a worker process: wait for the start time, run, report over ``pipe``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays Ctrl-C as "stop"
    pipe.send(("ready",))
    _, start_ns = pipe.recv()
    shift = start_ns - draft.start_ns
    plan = WorkerPlan(
        **{
            **{name: getattr(draft, name) for name in WorkerPlan.__dataclass_fields__},
            "start_ns": start_ns,
            "load_ns": draft.load_ns + shift,
            "end_ns": None if draft.end_ns is None else draft.end_ns + shift,
        }
    )

    async def main() -> None:
        worker = Worker(plan, lambda report: pipe.send(("report", report)))
        loop = asyncio.get_running_loop()
        loop.add_reader(pipe.fileno(), lambda: _on_control(pipe, worker))
        try:
            await worker.run()
        finally:
            loop.remove_reader(pipe.fileno())

    try:
        run_loop(main())
    except Exception as exc:
        pipe.send(("error", f"{exc.__class__.__name__}: {exc}"))
        raise
    finally:
        pipe.close()


def _on_control(pipe: Pipe, worker: Worker) -> None:
    try:
        message = pipe.recv()
    except EOFError:  # the parent is gone
        asyncio.get_running_loop().remove_reader(pipe.fileno())
        worker.request_stop()
        return
    if message[0] == "stop":
        worker.request_stop()


def _join_ledgers(path: str, procs: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(procs):
            part = f"{path}.{i}"
            if os.path.exists(part):
                with open(part, encoding="utf-8") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                os.unlink(part)


def _warn(message: str) -> None:
    import click

    click.echo(f"hopline: warning: {message}", err=True)
