"""Load driver: one process, many WebSocket connections, JSON lines on stdout.

Modes (every request is ``"<connection>:<seq>"``; the expected reply is that plus
``--suffix``, so every reply is checked, and the counts prove nothing was lost):

* ``closed``: each connection keeps one request in flight (send, wait, send ...).
* ``open``: requests are scheduled at a fixed rate, round robin over the
  connections, whether or not earlier ones were answered; latency is measured
  from the *scheduled* send time (no coordinated omission).
* ``hold``: open ``--connections`` sockets as fast as ``--concurrency`` handshakes
  at a time allow, report, then on ``request`` (a line on stdin) send one request
  per socket and check every reply, then on ``close`` close them all.

Stdout protocol (one JSON object per line): ``{"event": "window-start"}`` and
``{"event": "window-end"}`` bracket the measured window (so the caller can sample
CPU of other processes at the same moments), ``opened``/``answered`` in hold
mode, and last ``{"event": "result", ...}`` (see :func:`summary`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field

import aioloop
from hdrh.histogram import HdrHistogram
from wsclient import WsClient, open_client

__all__ = ["main"]

HIST_MAX_US = 600_000_000  # ten minutes
# Not loop.time(): under uvloop that is libuv's cached, millisecond clock.
clock = time.perf_counter
CONNECT_ATTEMPTS = 3


@dataclass
class Tally:
    """Counts and latencies of one run; only replies inside the window go to ``hist``."""

    sent: int = 0
    ok: int = 0
    wrong: int = 0
    errors: int = 0
    in_window: int = 0
    hist: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, HIST_MAX_US, 3))
    drained: asyncio.Event | None = None

    @property
    def answered(self) -> int:
        """Replies received so far, right or wrong."""
        return self.ok + self.wrong + self.errors

    def check(self, text: str, expected: str) -> bool:
        """Count one reply; True when it is the expected one."""
        if text == expected:
            self.ok += 1
        elif text.startswith('{"error"'):
            self.errors += 1
        else:
            self.wrong += 1
        if self.drained is not None and self.answered >= self.sent:
            self.drained.set()
        return text == expected


def emit(event: str, **fields: object) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def summary(tally: Tally, window: float, connections: int, cpu: float, **extra: object) -> dict:
    """The ``result`` line: counts, throughput over the window, percentiles in ms."""
    h = tally.hist
    lost = tally.sent - tally.ok - tally.wrong - tally.errors
    return {
        "connections": connections,
        "window_s": round(window, 3),
        "sent": tally.sent,
        "ok": tally.ok,
        "wrong": tally.wrong,
        "errors": tally.errors,
        "lost": lost,
        "measured": tally.in_window,
        "throughput": round(tally.in_window / window, 1) if window > 0 else 0.0,
        "p50_ms": h.get_value_at_percentile(50) / 1000,
        "p90_ms": h.get_value_at_percentile(90) / 1000,
        "p99_ms": h.get_value_at_percentile(99) / 1000,
        "p999_ms": h.get_value_at_percentile(99.9) / 1000,
        "max_ms": h.get_max_value() / 1000,
        "hist": h.encode().decode(),
        "driver_cpu_s": round(cpu, 3),
        **extra,
    }


async def connect_all(
    url: str,
    n: int,
    concurrency: int,
    hist: HdrHistogram | None = None,
    failures: list[str] | None = None,
) -> list[WsClient]:
    """Open ``n`` connections, at most ``concurrency`` handshakes at a time.

    A connection the server closes or resets during the handshake is retried (up
    to :data:`CONNECT_ATTEMPTS` times) and counted in ``failures``. ``hist``, if
    given, records each successful connect + handshake time in microseconds.
    """
    clients: list[WsClient | None] = [None] * n
    next_index = 0
    if failures is None:
        failures = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            for attempt in range(CONNECT_ATTEMPTS):
                t0 = clock()
                try:
                    clients[i] = await open_client(url)
                    break
                except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
                    failures.append(f"{type(exc).__name__}: {exc}")
                    if attempt == CONNECT_ATTEMPTS - 1:
                        raise
            if hist is not None:
                hist.record_value(max(1, int((clock() - t0) * 1e6)))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return [c for c in clients if c is not None]


async def wait_drained(tally: Tally, timeout: float) -> None:
    """Wait until every sent request was answered, or ``timeout`` passes."""
    tally.drained = asyncio.Event()
    if tally.answered < tally.sent:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await tally.drained.wait()
    tally.drained = None


async def run_closed(args: argparse.Namespace) -> dict:
    """Closed loop: one request in flight per connection."""
    clients = await connect_all(args.url, args.connections, 100)
    tally = Tally()
    window = [float("inf"), float("inf")]  # [start, end] in loop time
    running = True
    suffix = args.suffix

    def start(index: int, client: WsClient) -> None:
        state = {"seq": 0, "t0": 0.0, "expected": ""}

        def send() -> None:
            state["seq"] += 1
            text = f"{index}:{state['seq']}"
            state["expected"] = text + suffix
            state["t0"] = clock()
            tally.sent += 1
            client.send(text)

        def on_text(text: str) -> None:
            now = clock()
            tally.check(text, state["expected"])
            if window[0] <= now < window[1]:
                tally.in_window += 1
                tally.hist.record_value(max(1, int((now - state["t0"]) * 1e6)))
            if running:
                send()

        client.on_text = on_text
        send()

    for i, client in enumerate(clients):
        start(i, client)
    await asyncio.sleep(args.warmup)
    cpu0 = time.process_time()
    window[0] = clock()
    emit("window-start")
    window[1] = window[0] + args.duration
    await asyncio.sleep(args.duration)
    emit("window-end")
    cpu = time.process_time() - cpu0
    running = False
    await wait_drained(tally, args.drain_timeout)
    for client in clients:
        client.close()
    return summary(tally, args.duration, len(clients), cpu)


async def run_open(args: argparse.Namespace) -> dict:
    """Open loop at ``--rate`` requests/s, latency from the scheduled send time."""
    clients = await connect_all(args.url, args.connections, 100)
    tally = Tally()
    suffix = args.suffix
    window = [float("inf"), float("inf")]
    # Latencies per consecutive slice of the window (--slices): a stall of the machine
    # spoils the p99 of the slices it falls in, not of every slice.
    slices: list[list[int]] = [[] for _ in range(max(1, args.slices))]
    slice_s = args.duration / len(slices)
    queues: list[list[tuple[float, str]]] = [[] for _ in clients]  # FIFO per socket (plain mode)
    heads = [0] * len(clients)

    def on_text_for(index: int):
        pending = queues[index]

        def on_text(text: str) -> None:
            now = clock()
            scheduled, expected = pending[heads[index]]
            heads[index] += 1
            if heads[index] > 1024:
                del pending[: heads[index]]
                heads[index] = 0
            tally.check(text, expected)
            if window[0] <= scheduled < window[1]:
                tally.in_window += 1
                us = max(1, int((now - scheduled) * 1e6))
                tally.hist.record_value(us)
                slices[min(int((scheduled - window[0]) / slice_s), len(slices) - 1)].append(us)

        return on_text

    for i, client in enumerate(clients):
        client.on_text = on_text_for(i)
    interval = 1.0 / args.rate
    t_begin = clock() + 0.01
    window[0] = t_begin + args.warmup
    window[1] = window[0] + args.duration
    total = round((args.warmup + args.duration) * args.rate)
    n = len(clients)
    cpu0 = 0.0
    started = False
    i = 0
    while i < total:
        now = clock()
        if not started and now >= window[0]:
            started = True
            cpu0 = time.process_time()
            emit("window-start")
        due = min(total, int((now - t_begin) / interval) + 1)
        while i < due:
            scheduled = t_begin + i * interval
            c = i % n
            text = f"{c}:{i}"
            queues[c].append((scheduled, text + suffix))
            tally.sent += 1
            clients[c].send(text)
            i += 1
        await asyncio.sleep(max(0.0, t_begin + i * interval - clock()))
    if not started:
        cpu0 = time.process_time()
        emit("window-start")
    await wait_drained(tally, args.drain_timeout)
    emit("window-end")
    cpu = time.process_time() - cpu0
    for client in clients:
        client.close()
    # Throughput in open mode is the offered rate actually answered within the window.
    tally.in_window = min(tally.in_window, round(args.duration * args.rate))
    slice_p99 = [_p99_ms(v) for v in slices]
    return summary(tally, args.duration, n, cpu, rate=args.rate, slice_p99_ms=slice_p99)


def _p99_ms(values: list[int]) -> float | None:
    """The 99th percentile of microsecond latencies, in ms (nearest rank); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.99) - 1)] / 1000


async def run_hold(args: argparse.Namespace) -> dict:
    """Open many sockets, answer one request each on command, then close on command."""
    lines = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    handshakes = HdrHistogram(1, HIST_MAX_US, 3)
    failures: list[str] = []
    clients = await connect_all(args.url, args.connections, args.concurrency, handshakes, failures)
    t1 = time.monotonic()
    emit(
        "opened",
        connections=len(clients),
        t_first=t0,
        t_last=t1,
        handshake_p50_ms=handshakes.get_value_at_percentile(50) / 1000,
        handshake_p99_ms=handshakes.get_value_at_percentile(99) / 1000,
        handshake_max_ms=handshakes.get_max_value() / 1000,
        handshake_failures=len(failures),
        handshake_failure_kinds=sorted(set(failures)),
        cpu_s=round(time.process_time() - cpu0, 3),
    )
    tally = Tally()
    while (line := (await lines.readline()).decode().strip()) != "close":
        if not line:
            break  # stdin closed
        if line != "request":
            continue
        sent_at = clock()
        for i, client in enumerate(clients):
            text = f"{args.offset + i}:1"
            expected = text + args.suffix

            def on_text(reply: str, expected: str = expected, sent_at: float = sent_at) -> None:
                tally.in_window += 1
                tally.hist.record_value(max(1, int((clock() - sent_at) * 1e6)))
                tally.check(reply, expected)

            client.on_text = on_text
            tally.sent += 1
            client.send(text)
        await wait_drained(tally, args.drain_timeout)
        emit("answered", ok=tally.ok, sent=tally.sent)
    for client in clients:
        client.close()
    with_timeout = [c.closed for c in clients]
    if with_timeout:
        await asyncio.wait(with_timeout, timeout=10)
    cpu = time.process_time() - cpu0
    return summary(tally, t1 - t0, len(clients), cpu, t_first=t0, t_last=t1)


def main() -> None:
    """Parse arguments, run one mode, print its ``result`` line."""
    parser = argparse.ArgumentParser(description="hopline benchmark load driver")
    parser.add_argument("mode", choices=["closed", "open", "hold"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=500.0, help="open mode: requests/s")
    parser.add_argument("--suffix", default=" world", help="expected reply = request + suffix")
    parser.add_argument("--concurrency", type=int, default=64, help="hold: handshakes at once")
    parser.add_argument("--offset", type=int, default=0, help="hold: first connection number")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument(
        "--slices", type=int, default=1, help="open: also report the p99 of N equal slices"
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run = {"closed": run_closed, "open": run_open, "hold": run_hold}[args.mode]
    try:
        result = aioloop.run(run(args))
    except (OSError, TimeoutError) as exc:
        emit("failed", error=f"{type(exc).__name__}: {exc}")
        sys.exit(4)
    emit("result", mode=args.mode, **result)


if __name__ == "__main__":
    main()
