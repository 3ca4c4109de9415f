"""hopline benchmark: issue 7's scenarios against hopline, the reference design, two ceilings.

Starts everything it measures as subprocesses on free ports (against the broker at
``RABBITMQ_URL``), all at once, and drives each scenario on each system in
interleaved rounds from separate load-driver processes (``driver.py``); prints a
Markdown table and writes JSON. See bench/README.md. Usage::

    .venv/bin/python bench/run.py [--quick] [--json bench/results/latest.json] [--profile]

Exit code 0 when every request of every scenario was answered correctly (targets
missed are reported, not failed), 1 when a count is off, 3 when something could
not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aioloop
import procs
import report
import sweep
from wsclient import open_client
from yarl import URL

BENCH = Path(__file__).resolve().parent
BUDGETS_MS = (5.0, 10.0)  # latency capacity budgets of the sweep (issue 16)
WORKERS_BUDGET_MS = 10.0
ROOT = BENCH.parent
PY = sys.executable


# Helpers


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


@dataclass
class System:
    """One thing measured: how to reach it, which processes to watch, how to drive it."""

    key: str
    procs: list[procs.Proc]
    watch: dict[str, int]
    url: str = ""  # WebSocket URL; empty for the bare AMQP ceiling
    metrics_url: str = ""  # hopline's /metrics, scraped around each window
    amqp_args: list[str] = field(default_factory=list)  # the AMQP ceiling's client arguments


class Bench:
    """One benchmark run: settings, processes, results."""

    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.url = args.rabbitmq_url
        self.run_id = uuid.uuid4().hex[:8]
        self.started: list[procs.Proc] = []
        self.queues: list[str] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.sweeps: dict[str, dict[str, Any]] = {}  # "sweep" and "workers" scenarios
        self.broker_pid = procs.broker_pid(URL(self.url).port or 5672)

    async def start(self, name: str, argv: list[str], **kw: Any) -> procs.Proc:
        """Start a process owned by this run."""
        proc = await procs.start(name, argv, self.log_dir, **kw)
        self.started.append(proc)
        return proc

    async def stop(self, *ps: procs.Proc) -> None:
        """Stop processes of this run."""
        await asyncio.gather(*(p.stop() for p in ps))

    async def stop_all(self) -> None:
        """Stop whatever is still running and delete the queues this run declared."""
        await self.stop(*self.started)
        if not self.queues:
            return
        try:
            conn = await aio_pika.connect(self.url, timeout=5)
            async with conn:
                for name in self.queues:
                    channel = await conn.channel()
                    with contextlib.suppress(aio_pika.exceptions.AMQPError):
                        await channel.queue_delete(name)
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            log(f"could not delete queues {self.queues}: {exc}")

    # The run

    async def run(self) -> None:
        """Start every system, run (a) and (b) interleaved, then (c) and the profile."""
        a = self.args
        if a.sweep_only:
            await self.run_sweeps_only()
            return
        log("starting the reference, hopline, and the two ceilings")
        ref = await self.setup_reference()
        hop, processors = await self.setup_hopline()
        systems = [ref, hop]
        if a.persistent_row:
            systems.append(await self.setup_hopline_gateway("hopline_persistent", persistent=True))
        echo = await self.setup_echo()
        amqp = await self.setup_amqp()
        # Each scenario cycles through the systems `rounds` times, so a change in
        # what else the machine does affects every system alike.
        await self.interleaved("closed", [*systems, echo, amqp])
        await self.interleaved("open", [ref, hop])
        if a.low_rate > 0:
            await self.interleaved("open_low", [ref, hop])
        if a.sweep:
            await self.sweep([ref, hop])
        if a.workers_scenario:
            for s in systems[2:]:  # idle, but free their memory and sockets
                await self.stop(*s.procs)
            two = await self.setup_hopline_gateway("hopline_workers_2", workers=2)
            await self.workers([hop, two])
            await self.stop(*two.procs)
        for s in (ref, amqp, *systems[2:]):
            await self.stop(*s.procs)
        if a.scale > 0:
            log(f"bare websockets echo: scale, {a.scale:,} sockets")
            self.record("scale_echo", await self.scale(echo))
        await self.stop(*echo.procs)
        if a.profile:
            await self.profile(hop, processors[0])
        if a.scale > 0:
            log(f"hopline: scale, {a.scale:,} sockets")
            self.record("scale_hopline", await self.scale(hop))
        await self.stop(*hop.procs, *processors)

    async def run_sweeps_only(self) -> None:
        """``--sweep-only``: the reference and hopline, the sweep and the workers scenario."""
        log("starting the reference and hopline (sweeps only)")
        ref = await self.setup_reference()
        hop, processors = await self.setup_hopline()
        if self.args.sweep:
            await self.sweep([ref, hop])
        await self.stop(*ref.procs)
        if self.args.workers_scenario:
            two = await self.setup_hopline_gateway("hopline_workers_2", workers=2)
            await self.workers([hop, two])
            await self.stop(*two.procs)
        await self.stop(*hop.procs, *processors)

    async def interleaved(self, mode: str, systems: list[System]) -> None:
        """Scenario ``mode`` on every system, in ``--rounds`` alternating slices.

        ``mode``: ``closed`` (a.), ``open`` (b., 500/s) or ``open_low`` (b. at ``--low-rate``).
        """
        rounds = self.args.rounds
        slice_s = self.args.duration / rounds
        parts: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
        for r in range(rounds):
            for system in systems:
                log(f"{mode} loop, round {r + 1}/{rounds}: {system.key}")
                parts[system.key].append(await self.drive(system, mode, slice_s))
        for system in systems:
            key = f"{mode}_{system.key}"
            if system.key in ("echo", "amqp"):
                key = f"ceiling_{system.key}"
            self.record(key, report.merge_parts(parts[system.key]))

    # Systems

    async def setup_reference(self) -> System:
        """The original design: FastAPI/uvicorn gateway and prefetch-5 processor."""
        prefix = f"ref_{self.run_id}"
        self.queues += [f"{prefix}_input_queue", f"{prefix}_output_queue"]
        port = procs.free_port()
        common = ["--rabbitmq-url", self.url, "--prefix", prefix]
        ref = BENCH / "reference"
        gw = await self.start(
            "ref-gateway", [PY, str(ref / "gateway.py"), "--port", str(port), *common]
        )
        proc = await self.start("ref-processor", [PY, str(ref / "processor.py"), *common])
        url = f"ws://127.0.0.1:{port}/ws"
        await until(lambda: round_trip(url, "ready", "ready world"), 30, "the reference to answer")
        watch = {"gateway": gw.pid, "processor": proc.pid, "broker": self.broker_pid or 0}
        return System("reference", [gw, proc], watch, url=url)

    async def setup_hopline(self) -> tuple[System, list[procs.Proc]]:
        """hopline's gateway (default settings) and ``--processors`` processors."""
        queue = f"bench.{self.run_id}"
        self.queues += [queue, f"{queue}.batch"]
        self.hopline_args = ["--rabbitmq-url", self.url, "--input-queue", queue]
        processors = [
            await self.start(
                f"hopline-processor-{i}", [PY, "-m", "hopline", "processor", *self.hopline_args]
            )
            for i in range(self.args.processors)
        ]
        self.processor_watch = {f"processor-{i}": p.pid for i, p in enumerate(processors)}
        return await self.setup_hopline_gateway("hopline"), processors

    async def setup_hopline_gateway(
        self, key: str, persistent: bool = False, workers: int = 1
    ) -> System:
        """A hopline gateway on the run's input queue, ready and batching.

        With ``workers`` > 1 (``--workers N``) every worker must report batching
        (each /health request lands on the worker the kernel picks), and its
        watched CPU is the supervisor's plus every worker's.
        """
        extra = ["--persistent"] if persistent else []
        if workers > 1:
            extra += ["--workers", str(workers)]
        gw = await self.start(
            f"{key}-gateway",
            [PY, "-m", "hopline", "gateway", "--host", "127.0.0.1", "--port", "0",
             *extra, *self.hopline_args],
        )  # fmt: skip
        port = int((await gw.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)).group(1))
        url = f"ws://127.0.0.1:{port}/ws"
        base = f"http://127.0.0.1:{port}"

        batching_workers: set[int] = set()

        async def batching() -> bool:
            health = json.loads(await http_get(f"{base}/health"))
            if health.get("batching") is True:
                batching_workers.add(health.get("worker", {}).get("index", 0))
            return len(batching_workers) >= workers

        await until(batching, 30, f"{key} batching to be active")
        await until(lambda: round_trip(url, "ready", "ready world"), 30, f"{key} to answer")
        watch = {"gateway": gw.pid, "broker": self.broker_pid or 0, **self.processor_watch}
        if workers > 1:
            watch |= {f"gateway-worker-{i}": pid for i, pid in enumerate(procs.children(gw.pid))}
            return System(key, [gw], watch, url=url)  # /metrics is one worker's: not scraped
        return System(key, [gw], watch, url=url, metrics_url=f"{base}/metrics")

    async def setup_echo(self) -> System:
        """Ceiling: a bare websockets echo server."""
        echo = await self.start("echo-server", [PY, str(BENCH / "echo_server.py"), "--port", "0"])
        match = await echo.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)
        url = f"ws://127.0.0.1:{match.group(1)}/ws"
        return System("echo", [echo], {"server": echo.pid}, url=url)

    async def setup_amqp(self) -> System:
        """Ceiling: a bare aio-pika RPC server (its client is started per window)."""
        queue = f"bench.amqp.{self.run_id}"
        self.queues.append(queue)
        common = ["--rabbitmq-url", self.url, "--queue", queue, "--in-flight", "100"]
        server = await self.start(
            "amqp-server", [PY, str(BENCH / "amqp_rtt.py"), "server", *common]
        )
        await server.wait_log("consuming", 30)
        watch = {"server": server.pid, "broker": self.broker_pid or 0}
        return System("amqp", [server], watch, amqp_args=common)

    # Driving

    def argv(
        self, system: System, mode: str, duration: float, rate: float | None = None
    ) -> list[str]:
        """The load process' command line for one window (``rate``: open loop at that rate)."""
        timing = ["--duration", str(duration), "--warmup", str(self.args.warmup)]
        if system.amqp_args:
            return [PY, str(BENCH / "amqp_rtt.py"), "client", *system.amqp_args, *timing]
        suffix = "" if system.key == "echo" else " world"
        if mode == "closed":
            load = ["--connections", "50", "--suffix", suffix]
        else:
            slices = ["--slices", str(self.args.sweep_slices)] if rate else []
            rate = rate or (500 if mode == "open" else self.args.low_rate)
            load = ["--connections", "100", "--rate", str(rate), "--suffix", suffix, *slices]
        driver_mode = "closed" if mode == "closed" else "open"
        return [PY, str(BENCH / "driver.py"), driver_mode, "--url", system.url, *load, *timing]

    async def drive(
        self, system: System, mode: str, duration: float, rate: float | None = None
    ) -> dict[str, Any]:
        """One measured window on ``system``; CPU of its processes sampled over the window."""
        before = await http_get(system.metrics_url) if system.metrics_url else ""
        driver = await self.start(
            f"driver-{mode}-{system.key}", self.argv(system, mode, duration, rate), pipe_stdio=True
        )
        cpu = CpuWatch({**system.watch, "driver": driver.pid})
        result: dict[str, Any] | None = None
        assert driver.process.stdout is not None
        async with asyncio.timeout(duration + self.args.warmup + 90):
            while line := await driver.process.stdout.readline():
                event = json.loads(line)
                if event["event"] == "window-start":
                    cpu.begin()
                elif event["event"] == "window-end":
                    cpu.end()
                elif event["event"] == "result":
                    result = event
                elif event["event"] == "failed":
                    raise RuntimeError(f"driver on {system.key}: {event['error']}")
            await driver.process.wait()
        if result is None:
            tail = driver.log_text()[-800:]
            raise RuntimeError(f"driver on {system.key} gave no result; log:\n{tail}")
        result.pop("event")
        result["cpu_cores"] = cpu.cores
        result["syscalls_and_switches"] = cpu.counts
        if system.metrics_url:
            after = await http_get(system.metrics_url)
            result["publish_batches"] = batch_stats(
                *(parse_metrics(t, "hopline_publish_batch_requests") for t in (before, after))
            )
            result["gateway_round_trip"] = histogram_delta(
                *(parse_metrics(t, "hopline_round_trip_seconds") for t in (before, after))
            )
        return result

    async def sweep(self, systems: list[System]) -> None:
        """Open-loop sweep: each system's latency curve and capacity at each budget."""
        a = self.args
        starts = {"reference": a.sweep_start_reference}
        searches = {
            s.key: sweep.RateSearch(
                BUDGETS_MS,
                starts.get(s.key, a.sweep_start),
                steps=a.sweep_steps,
                resolution=a.sweep_resolution,
                statistic=a.sweep_statistic,
            )
            for s in systems
        }
        self.sweeps["sweep"] = await self.search("sweep", systems, searches)

    async def workers(self, systems: list[System]) -> None:
        """Capacity at p99 <= 10 ms with one gateway process and with ``--workers 2``."""
        a = self.args
        searches = {
            s.key: sweep.RateSearch(
                (WORKERS_BUDGET_MS,),
                a.sweep_start,
                steps=a.sweep_steps,
                resolution=a.sweep_resolution,
                statistic=a.sweep_statistic,
            )
            for s in systems
        }
        result = await self.search("workers", systems, searches)
        caps = [c["capacity"][sweep.label(WORKERS_BUDGET_MS)] for c in result["curves"].values()]
        result["two_over_one"] = round(caps[1] / caps[0], 3) if all(caps) else None
        self.sweeps["workers"] = result

    async def search(
        self, name: str, systems: list[System], searches: dict[str, sweep.RateSearch]
    ) -> dict[str, Any]:
        """Measure each system's next rate in turn (interleaved) until every search is done."""
        window, points = self.args.sweep_window, {s.key: [] for s in systems}
        load = [os.getloadavg()[0]]
        pending = list(systems)
        while pending:
            for system in list(pending):
                rate = searches[system.key].next_rate()
                if rate is None:
                    pending.remove(system)
                    continue
                r = await self.drive(system, "open", window, rate)
                complete = r["sent"] == r["ok"] and not (r["lost"] or r["wrong"] or r["errors"])
                slice_p99 = tuple(x for x in r.get("slice_p99_ms", []) if x is not None)
                point = sweep.Point(
                    rate, r["p50_ms"], r["p99_ms"], r["max_ms"], complete, slice_p99
                )
                searches[system.key].add(point)
                keep = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "sent", "ok", "wrong", "errors")
                points[system.key].append(
                    {"rate": rate, "complete": complete, "lost": r["lost"]}
                    | {k: r[k] for k in keep}
                    | {
                        "slice_p99_ms": list(slice_p99),
                        "median_slice_p99_ms": point.median_slice_p99_ms,
                    }
                    | {"cpu_cores": r["cpu_cores"], "load_average_1m": round(os.getloadavg()[0], 2)}
                    | _batching(r)
                )
                load.append(os.getloadavg()[0])
                log(
                    f"{name} {system.key} {rate:,.0f}/s: p50 {r['p50_ms']:.2f} ms "
                    f"p99 {r['p99_ms']:.2f} ms (slices {list(slice_p99)}) "
                    f"max {r['max_ms']:.1f} ms "
                    f"sent {r['sent']} ok {r['ok']}"
                )
        curves = {
            s.key: {
                "points": points[s.key],
                "capacity": searches[s.key].capacities(),
                "capacity_by_statistic": {
                    stat: searches[s.key].capacities(stat) for stat in sweep.STATISTICS
                },
            }
            for s in systems
        }
        for key, c in curves.items():
            log(f"{name} {key}: capacity {c['capacity']}")
        return {
            "window_s": window,
            "warmup_s": self.args.warmup,
            "connections": 100,
            "budgets_ms": list(searches[systems[0].key].budgets_ms),
            "statistic": self.args.sweep_statistic,
            "slices": self.args.sweep_slices,
            "load_average_1m": {"min": round(min(load), 2), "max": round(max(load), 2)},
            "curves": curves,
        }

    def record(self, key: str, result: dict[str, Any]) -> None:
        """Keep a scenario's result and log a one-line summary."""
        self.results[key] = result
        log(
            f"{key}: {result.get('throughput', 0):,.0f}/s p50 {result['p50_ms']:.2f} ms "
            f"p99 {result['p99_ms']:.2f} ms sent {result['sent']} ok {result['ok']} "
            f"cpu {result.get('cpu_cores')}"
        )

    async def scale(self, system: System) -> dict[str, Any]:
        """Scenario (c): hold many sockets in one server, answer one request on each."""
        gw = system.procs[0]
        url = system.url
        suffix = "" if system.key == "echo" else " world"
        n, parts = self.args.scale, self.args.scale_drivers
        rss_base = procs.rss_kib(gw.pid)
        drivers = []
        for i in range(parts):
            count = n // parts + (1 if i < n % parts else 0)
            offset = sum(n // parts + (1 if j < n % parts else 0) for j in range(i))
            argv = [
                PY, str(BENCH / "driver.py"), "hold", "--url", url, "--connections", str(count),
                "--offset", str(offset), "--concurrency", str(self.args.scale_concurrency),
                "--suffix", suffix,
            ]  # fmt: skip
            drivers.append(
                await self.start(f"driver-scale-{system.key}-{i}", argv, pipe_stdio=True)
            )

        async def next_event(p: procs.Proc) -> dict[str, Any]:
            assert p.process.stdout is not None
            line = await p.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{p.name} ended early; log:\n{p.log_text()[-800:]}")
            event = json.loads(line)
            if event["event"] == "failed":
                raise RuntimeError(f"{p.name}: {event['error']}")
            return event

        cpu = CpuWatch({"server": gw.pid} | {p.name: p.pid for p in drivers})
        async with asyncio.timeout(300):
            cpu.begin()
            overflows = procs.listen_overflows()
            opened = await asyncio.gather(*(next_event(p) for p in drivers))
            overflows = procs.listen_overflows() - overflows
            cpu.end()
            active = None
            if system.metrics_url:
                base = system.metrics_url.removesuffix("/metrics")
                active = json.loads(await http_get(f"{base}/health")).get("active_websockets")
            rss_idle = procs.rss_kib(gw.pid)
            for p in drivers:
                assert p.process.stdin is not None
                p.process.stdin.write(b"request\n")
            answered = await asyncio.gather(*(next_event(p) for p in drivers))
            rss_answered = procs.rss_kib(gw.pid)
            for p in drivers:
                assert p.process.stdin is not None
                p.process.stdin.write(b"close\n")
            results = await asyncio.gather(*(next_event(p) for p in drivers))
            await asyncio.gather(*(p.process.wait() for p in drivers))
        t_first = min(e["t_first"] for e in opened)
        t_last = max(e["t_last"] for e in opened)
        total = sum(e["connections"] for e in opened)
        sent = sum(r["sent"] for r in results)
        ok = sum(r["ok"] for r in results)
        p50 = max(r["p50_ms"] for r in results)
        p99 = max(r["p99_ms"] for r in results)
        return {
            "target_connections": n,
            "connections": total,
            "driver_processes": parts,
            "handshakes_in_flight_per_driver": self.args.scale_concurrency,
            "server_active_websockets": active,
            "open_seconds": round(t_last - t_first, 3),
            "accept_rate": round(total / (t_last - t_first), 1),
            "handshake_p99_ms": max(e["handshake_p99_ms"] for e in opened),
            "handshake_max_ms": max(e["handshake_max_ms"] for e in opened),
            "handshake_failures_retried": sum(e["handshake_failures"] for e in opened),
            "listen_queue_overflows": overflows,
            "cpu_cores_while_opening": cpu.cores,
            "rss_base_kib": rss_base,
            "rss_idle_kib": rss_idle,
            "rss_after_answer_kib": rss_answered,
            "rss_per_connection_kib": round((rss_idle - rss_base) / total, 2),
            "rss_per_connection_after_answer_kib": round((rss_answered - rss_base) / total, 2),
            "answered_events": answered,
            "sent": sent,
            "ok": ok,
            "wrong": sum(r["wrong"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "lost": sum(r["lost"] for r in results),
            "p50_ms": p50,
            "p99_ms": p99,
            "throughput": 0.0,
        }

    async def profile(self, hop: System, processor: procs.Proc) -> None:
        """Scenario (a) again on hopline with py-spy sampling the gateway and one processor."""
        spy = str(Path(PY).parent / "py-spy")
        seconds = int(self.args.duration + self.args.warmup)
        out_dir = self.args.json.parent if self.args.json else BENCH / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        spies = []
        for name, proc in (("gateway", hop.procs[0]), ("processor", processor)):
            path = out_dir / f"profile-{name}.txt"
            files[name] = path
            argv = [spy, "record", "-f", "raw", "--nonblocking", "-r", "200", "-d", str(seconds),
                    "-p", str(proc.pid), "-o", str(path)]  # fmt: skip
            spies.append(await self.start(f"py-spy-{name}", argv))
        log("hopline: closed loop under py-spy")
        result = await self.drive(hop, "closed", self.args.duration)
        for s in spies:
            async with asyncio.timeout(60):
                await s.process.wait()
        summary = {}
        for name, path in files.items():
            if path.exists():
                summary[name] = report.collapse_profile(path.read_text().splitlines(), top=25)
        result["profile"] = summary
        self.record("profile_hopline", result)


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


async def main_async(args: argparse.Namespace) -> int:
    """Run every scenario, print the table, write the JSON."""
    broker = await check_broker(args.rabbitmq_url)
    info = machine()
    info["broker"] = broker
    log(f"machine: {info['nproc']} x {info['cpu_model']}, Python {info['python']}")
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop what was started, then exit
        loop.add_signal_handler(sig, main_task.cancel)
    with tempfile.TemporaryDirectory(prefix="hopline-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            await bench.run()
        except (RuntimeError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        except asyncio.CancelledError:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await bench.stop_all()
            if args.keep_logs:
                keep_logs(Path(tmp), args)
    results = bench.results
    measured = {k: v for k, v in results.items() if k != "profile_hopline"}
    goals = report.targets(measured)
    problems = report.verify(results)
    table = report.markdown_table(measured, goals)
    cpu = report.cpu_table(results)
    if measured:  # nothing of a.-d. with --sweep-only
        print(table)
        print("\nCPU microseconds per reply (scenario a.), from /proc:\n" + cpu)
        print()
    for key in (
        "closed_reference",
        "closed_hopline",
        "closed_hopline_persistent",
        "ceiling_echo",
        "ceiling_amqp",
    ):
        if key in results:
            r = results[key]
            r["per_request"] = report.per_request(r)
            print(f"{key} CPU, cores: {r['cpu_cores']}")
            print(f"{key} per request: {r['per_request']}")
    if "closed_hopline" in results:
        hop = results["closed_hopline"]
        print(f"closed_hopline batching: {hop['publish_batches']}")
        print(f"closed_hopline gateway-side latency: {hop['gateway_round_trip']}")
    problems += sweep_problems(bench.sweeps)
    for name, result in bench.sweeps.items():
        print(f"\n{name} (open loop, {result['window_s']:g} s per point):")
        print(sweep.markdown(result["curves"], tuple(result["budgets_ms"])))
    if "workers" in bench.sweeps:
        print(f"workers 2 / workers 1 capacity: {bench.sweeps['workers']['two_over_one']}")
    if problems:
        print("\nCOUNT PROBLEMS:\n" + "\n".join(problems))
    out = {
        "command": " ".join([_shown(PY), *sys.argv]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "low_rate": args.low_rate,
            "warmup_s": args.warmup,
            "hopline_processors": args.processors,
            "scale_connections": args.scale,
            "scale_driver_processes": args.scale_drivers,
        },
        "scenarios": results,
        **bench.sweeps,
        "targets": goals | sweep_targets(bench.sweeps),
        "verified": not problems,
        "problems": problems,
        "table": table,
        "cpu_table": cpu,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        log(f"wrote {args.json}")
    if args.plot and bench.sweeps:
        write_plot(out, args.plot)
        log(f"wrote {args.plot}")
    return 1 if problems else 0


def _batching(r: dict[str, Any]) -> dict[str, Any]:
    """Requests per publish flush (about one AMQP message) in a window, for a sweep point."""
    batches = r.get("publish_batches")
    return {"requests_per_flush": batches["mean_requests_per_flush"]} if batches else {}


def sweep_problems(sweeps: dict[str, dict[str, Any]]) -> list[str]:
    """Points of the sweeps where a request was not answered correctly."""
    return [
        f"{name} {key} at {p['rate']:,.0f}/s: sent {p['sent']} ok {p['ok']} lost {p['lost']}"
        for name, result in sweeps.items()
        for key, curve in result["curves"].items()
        for p in curve["points"]
        if not p["complete"]
    ]


def sweep_targets(sweeps: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Issue 16's capacity goals, from the sweep and the workers scenario."""
    out: dict[str, dict[str, Any]] = {}
    if "sweep" in sweeps:
        curves = sweeps["sweep"]["curves"]
        hop = curves.get("hopline", {}).get("capacity", {})
        ref = curves.get("reference", {}).get("capacity", {})
        for budget, goal in ((10.0, 10_000.0), (5.0, 5_000.0)):
            key = sweep.label(budget)
            value = hop.get(key)
            out[f"capacity_{key}"] = {
                "value": value, "goal": goal, "higher_is_better": True,
                "met": None if value is None else value >= goal, "unit": "/s",
            }  # fmt: skip
        key = sweep.label(10.0)
        x = round(hop[key] / ref[key], 2) if hop.get(key) and ref.get(key) else None
        out["capacity_vs_reference"] = {
            "value": x, "goal": 15.0, "higher_is_better": True,
            "met": None if x is None else x >= 15.0, "unit": "x",
        }  # fmt: skip
    if "workers" in sweeps:
        x = sweeps["workers"]["two_over_one"]
        out["workers_2_over_1"] = {
            "value": x, "goal": 1.0, "higher_is_better": True,
            "met": None if x is None else x > 1.0, "unit": "x",
        }  # fmt: skip
    return out


def write_plot(out: dict[str, Any], path: Path) -> None:
    """The sweep curves (and the workers scenario's) of a results JSON as an SVG."""
    curves: dict[str, dict[str, Any]] = {}
    budgets: tuple[float, ...] = BUDGETS_MS
    if "sweep" in out:
        curves |= out["sweep"]["curves"]
        budgets = tuple(out["sweep"]["budgets_ms"])
    if "workers" in out:
        two = out["workers"]["curves"].get("hopline_workers_2")
        if two is not None:
            curves["hopline --workers 2"] = two
    load = out["machine"].get("load_average_at_start", ["?"])[0]
    title = (
        f"Open loop, 100 connections: p99 and p50 by offered load "
        f"({out['time'][:10]}, {out['machine']['nproc']} cores, load {load} at start)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    statistic = out.get("sweep", out.get("workers", {})).get("statistic", "p99")
    path.write_text(sweep.svg(curves, budgets, title, statistic=statistic))


def _shown(path: str) -> str:
    """``path`` relative to the repository when inside it (``.venv/bin/python``)."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return path


def keep_logs(tmp: Path, args: argparse.Namespace) -> None:
    """Copy process logs next to the JSON."""
    dest = (args.json.parent if args.json else BENCH / "results") / "logs"
    dest.mkdir(parents=True, exist_ok=True)
    for f in tmp.glob("*.log"):
        (dest / f.name).write_bytes(f.read_bytes())


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description="hopline benchmark (issue 7)")
    parser.add_argument("--quick", action="store_true", help="3 s windows, 2,000 sockets")
    parser.add_argument(
        "--json", type=Path, help="write results here (e.g. bench/results/latest.json)"
    )
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument(
        "--duration", type=float, help="seconds measured per scenario [20; quick 3]"
    )
    parser.add_argument("--warmup", type=float, help="seconds before measuring [2; quick 1]")
    parser.add_argument("--processors", type=int, default=1, help="hopline processor processes [1]")
    parser.add_argument(
        "--scale", type=int, help="sockets in scenario (c), 0 skips [10000; quick 2000]"
    )
    parser.add_argument(
        "--scale-drivers", type=int, default=2, help="driver processes opening them [2]"
    )
    parser.add_argument(
        "--scale-concurrency", type=int, default=64, help="handshakes in flight per driver [64]"
    )
    parser.add_argument("--profile", action="store_true", help="also run (a) under py-spy")
    parser.add_argument(
        "--low-rate",
        type=float,
        default=200.0,
        help="also run (b) at this rate, below the reference's capacity; 0 skips [200]",
    )
    parser.add_argument(
        "--no-persistent-row",
        dest="persistent_row",
        action="store_false",
        help="skip (a) through a hopline gateway started with --persistent",
    )
    parser.add_argument(
        "--rounds", type=int, help="slices per system, interleaved, per scenario [4; quick 1]"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="copy process logs next to the JSON"
    )
    parser.add_argument(
        "--no-sweep", dest="sweep", action="store_false", help="skip the open-loop sweep"
    )
    parser.add_argument(
        "--sweep-only",
        action="store_true",
        help="run only the sweep and the workers scenario (skip a.-d.)",
    )
    parser.add_argument(
        "--no-workers",
        dest="workers_scenario",
        action="store_false",
        help="skip the workers scenario (one gateway process against --workers 2)",
    )
    parser.add_argument(
        "--sweep-window", type=float, help="seconds measured per sweep point [5; quick 1.5]"
    )
    parser.add_argument("--sweep-steps", type=int, help="bisection points per system [8; quick 2]")
    parser.add_argument(
        "--sweep-start", type=float, default=1000.0, help="first rate for hopline [1000]"
    )
    parser.add_argument(
        "--sweep-statistic",
        choices=["p99", "median_slice_p99"],
        default="p99",
        help="what a point's latency is judged by: the window's p99, or the median of the "
        "p99s of --sweep-slices slices (for a machine shared with other work) [p99]",
    )
    parser.add_argument(
        "--sweep-slices", type=int, default=5, help="slices of each sweep window [5]"
    )
    parser.add_argument(
        "--sweep-start-reference", type=float, default=200.0, help="first rate, reference [200]"
    )
    parser.add_argument(
        "--plot", type=Path, help="write the sweep curves as SVG (docs/performance-sweep.svg)"
    )
    args = parser.parse_args()
    args.sweep_window = args.sweep_window or (1.5 if args.quick else 5.0)
    if args.sweep_steps is None:
        args.sweep_steps = 2 if args.quick else 8
    args.sweep_resolution = 0.25 if args.quick else 0.08
    args.duration = args.duration or (3.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.rounds = args.rounds or (1 if args.quick else 4)
    args.scale = args.scale if args.scale is not None else (2000 if args.quick else 10000)
    os.chdir(ROOT)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
