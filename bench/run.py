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
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report
import sweep
from probe import check_broker, log, machine
from scenarios import BUDGETS_MS, Scenarios
from systems import BENCH, PY, Systems

ROOT = BENCH.parent


class Bench:
    """One benchmark run: which systems run when, and which scenarios on which."""

    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.systems = Systems(args, log_dir)
        self.scenarios = Scenarios(args, self.systems)

    # The run

    async def run(self) -> None:
        """Start every system, run (a) and (b) interleaved, then (c) and the profile."""
        a, systems, sc = self.args, self.systems, self.scenarios
        if a.sweep_only:
            await self.run_sweeps_only()
            return
        log("starting the reference, hopline, and the two ceilings")
        ref = await systems.setup_reference()
        hop, processors = await systems.setup_hopline()
        measured = [ref, hop]
        if a.persistent_row:
            measured.append(
                await systems.setup_hopline_gateway("hopline_persistent", persistent=True)
            )
        echo = await systems.setup_echo()
        amqp = await systems.setup_amqp()
        # Each scenario cycles through the systems `rounds` times, so a change in
        # what else the machine does affects every system alike.
        await sc.interleaved("closed", [*measured, echo, amqp])
        await sc.interleaved("open", [ref, hop])
        if a.low_rate > 0:
            await sc.interleaved("open_low", [ref, hop])
        if a.sweep:
            await sc.sweep([ref, hop])
        if a.workers_scenario:
            for s in measured[2:]:  # idle, but free their memory and sockets
                await systems.stop(*s.procs)
            two = await systems.setup_hopline_gateway("hopline_workers_2", workers=2)
            await sc.workers([hop, two])
            await systems.stop(*two.procs)
        for s in (ref, amqp, *measured[2:]):
            await systems.stop(*s.procs)
        if a.scale > 0:
            log(f"bare websockets echo: scale, {a.scale:,} sockets")
            sc.record("scale_echo", await sc.scale(echo))
        await systems.stop(*echo.procs)
        if a.profile:
            await sc.profile(hop, processors[0])
        if a.scale > 0:
            log(f"hopline: scale, {a.scale:,} sockets")
            sc.record("scale_hopline", await sc.scale(hop))
        await systems.stop(*hop.procs, *processors)

    async def run_sweeps_only(self) -> None:
        """``--sweep-only``: the reference and hopline, the sweep and the workers scenario."""
        systems, sc = self.systems, self.scenarios
        log("starting the reference and hopline (sweeps only)")
        ref = await systems.setup_reference()
        hop, processors = await systems.setup_hopline()
        if self.args.sweep:
            await sc.sweep([ref, hop])
        await systems.stop(*ref.procs)
        if self.args.workers_scenario:
            two = await systems.setup_hopline_gateway("hopline_workers_2", workers=2)
            await sc.workers([hop, two])
            await systems.stop(*two.procs)
        await systems.stop(*hop.procs, *processors)


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
            await bench.systems.stop_all()
            if args.keep_logs:
                keep_logs(Path(tmp), args)
    results, sweeps = bench.scenarios.results, bench.scenarios.sweeps
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
    problems += sweep_problems(sweeps)
    for name, result in sweeps.items():
        print(f"\n{name} (open loop, {result['window_s']:g} s per point):")
        print(sweep.markdown(result["curves"], tuple(result["budgets_ms"])))
    if "workers" in sweeps:
        print(f"workers 2 / workers 1 capacity: {sweeps['workers']['two_over_one']}")
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
        **sweeps,
        "targets": goals | sweep_targets(sweeps),
        "verified": not problems,
        "problems": problems,
        "table": table,
        "cpu_table": cpu,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        log(f"wrote {args.json}")
    if args.plot and sweeps:
        write_plot(out, args.plot)
        log(f"wrote {args.plot}")
    return 1 if problems else 0


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
