"""The measured windows of one benchmark run, and their results.

:class:`Scenarios` drives each window from a load-driver process (``driver.py``,
or ``amqp_rtt.py client`` for the AMQP ceiling) started through
:class:`systems.Systems`, samples the CPU of the system's processes over the
window and scrapes hopline's /metrics around it: (a) closed loop and (b) open loop
in interleaved rounds, the open-loop sweeps (capacity at each latency budget, via
:class:`sweep.RateSearch`), (c) many sockets held at once, and (a) under py-spy.
Results accumulate in :attr:`Scenarios.results` and :attr:`Scenarios.sweeps`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import procs
import report
import sweep
from probe import CpuWatch, batch_stats, histogram_delta, http_get, log, parse_metrics
from systems import BENCH, PY, System, Systems

__all__ = ["BUDGETS_MS", "WORKERS_BUDGET_MS", "Scenarios"]

BUDGETS_MS = (5.0, 10.0)  # latency capacity budgets of the sweep (issue 16)
WORKERS_BUDGET_MS = 10.0


class Scenarios:
    """The windows of one run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, systems: Systems) -> None:
        self.args = args
        self.systems = systems
        self.results: dict[str, dict[str, Any]] = {}
        self.sweeps: dict[str, dict[str, Any]] = {}  # "sweep" and "workers" scenarios

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
        driver = await self.systems.start(
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
                await self.systems.start(f"driver-scale-{system.key}-{i}", argv, pipe_stdio=True)
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
            spies.append(await self.systems.start(f"py-spy-{name}", argv))
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


def _batching(r: dict[str, Any]) -> dict[str, Any]:
    """Requests per publish flush (about one AMQP message) in a window, for a sweep point."""
    batches = r.get("publish_batches")
    return {"requests_per_flush": batches["mean_requests_per_flush"]} if batches else {}
