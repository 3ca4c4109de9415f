"""Measuring helpers the bench scripts share: waiting, one round trip, /metrics, /proc CPU.

Used by :mod:`run` (and its :mod:`systems` and :mod:`scenarios`) and by :mod:`stalls`.
:class:`CpuWatch` samples CPU over a window; :func:`batch_stats` and
:func:`histogram_delta` turn two scrapes of the gateway's /metrics into what happened
between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aioloop
import procs
from wsclient import open_client

__all__ = [
    "CpuWatch",
    "batch_stats",
    "check_broker",
    "histogram_delta",
    "http_get",
    "log",
    "machine",
    "parse_metrics",
    "round_trip",
    "until",
]


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """What this was measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    with contextlib.suppress(OSError, IndexError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    import websockets

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "websockets": websockets.__version__,
        "aio_pika": aio_pika.__version__,
        "event_loop": aioloop.loop_name(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


async def http_get(url: str, timeout: float = 5.0) -> str:
    """Body of a GET (any status)."""

    def get() -> str:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.read().decode()

    return await asyncio.to_thread(get)


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; raise RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return
        except (OSError, ConnectionError, TimeoutError, ValueError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


async def round_trip(url: str, text: str, expected: str) -> bool:
    """One request over a fresh socket; True when the reply is ``expected``."""
    client = await open_client(url, timeout=5)
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    client.on_text = lambda t: got.done() or got.set_result(t)
    client.send(text)
    try:
        async with asyncio.timeout(10):
            return (await got) == expected
    finally:
        client.close()


def parse_metrics(text: str, name: str) -> dict[str, float]:
    """Samples of one Prometheus metric family: ``{sample_with_labels: value}``."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class CpuWatch:
    """CPU seconds of named pids between two moments, as cores used.

    ``cores["machine"]`` is what the whole machine used meanwhile (/proc/stat), so
    ``machine`` minus the named processes is what everything else took.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self._m0 = 0.0
        self._k0: dict[str, dict[str, int]] = {}
        self.cores: dict[str, float] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def begin(self) -> None:
        """Mark the start of the window."""
        self._t0 = time.monotonic()
        self._c0 = {k: procs.cpu_seconds(p) for k, p in self.pids.items()}
        self._m0 = procs.machine_busy_seconds()
        self._k0 = {k: procs.counters(p) for k, p in self.pids.items()}

    def end(self) -> None:
        """Mark the end; ``cores`` holds each process' average cores used."""
        elapsed = time.monotonic() - self._t0
        self.cores = {
            k: round((procs.cpu_seconds(p) - self._c0[k]) / elapsed, 3)
            for k, p in self.pids.items()
        }
        for k, p in self.pids.items():
            now = procs.counters(p)
            self.counts[k] = {c: v - self._k0[k].get(c, 0) for c, v in now.items()}
        machine = round((procs.machine_busy_seconds() - self._m0) / elapsed, 3)
        self.cores["others"] = round(machine - sum(self.cores.values()), 3)
        self.cores["machine"] = machine


def batch_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Requests per publish during a window, from two scrapes of the batch-size histogram."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = delta.get("hopline_publish_batch_requests_count", 0.0)
    total = delta.get("hopline_publish_batch_requests_sum", 0.0)
    buckets = {
        k.split('le="')[1].rstrip('"}'): int(v)
        for k, v in delta.items()
        if k.startswith("hopline_publish_batch_requests_bucket")
    }
    return {
        "flushes": int(count),
        "requests": int(total),
        "mean_requests_per_flush": round(total / count, 2) if count else None,
        "cumulative_buckets": buckets,
    }


def histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """A Prometheus histogram's observations between two scrapes: count, mean, median bucket."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = next((v for k, v in delta.items() if k.endswith("_count")), 0.0)
    total = next((v for k, v in delta.items() if k.endswith("_sum")), 0.0)
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v) for k, v in delta.items() if "_bucket" in k
    )
    median_le = next((le for le, v in buckets if count and v >= count / 2), None)
    p99_le = next((le for le, v in buckets if count and v >= count * 0.99), None)
    return {
        "count": int(count),
        "mean_ms": round(total / count * 1000, 3) if count else None,
        "p50_at_most_ms": None if median_le is None else median_le * 1000,
        "p99_at_most_ms": None if p99_le is None else p99_le * 1000,
    }


async def check_broker(url: str) -> str:
    """The broker's product and version; exit 3 with one line when it is not reachable."""
    try:
        conn = await aio_pika.connect(url, timeout=5)
        props = conn.transport.connection.server_properties if conn.transport else {}
        await conn.close()
        return f"{props.get('product', '?')} {props.get('version', '?')}"
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        print(
            f"error: cannot reach RabbitMQ at {url}: {exc or type(exc).__name__}", file=sys.stderr
        )
        sys.exit(3)
