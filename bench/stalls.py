"""Where hopline's tail latency comes from at a steady open-loop rate (issue 16).

Starts one processor and one gateway (each under ``gcprobe.py``, which times every
garbage collection), drives ``--rate`` requests/s over 100 connections for
``--duration`` s after ``--warmup`` s, and reports: p50/p99/max (every reply
checked), CPU microseconds per reply of each process (/proc), the GC pauses
of each process, and with ``--profile py-spy`` the top frames of both processes
(``py-spy record -f raw`` over the window; raw stacks kept in ``--out``).
``--repeat N`` runs N windows on the same processes (the figures of each, and
the GC summary over all of them). Usage::

    .venv/bin/python bench/stalls.py --rate 3500 --duration 15 --profile py-spy --out /tmp/st

Gateway/processor options after ``--gateway-args`` / ``--processor-args`` (quoted)
are passed on, to compare settings in one run of the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import procs
import report
from probe import CpuWatch, http_get, round_trip, until

BENCH = Path(__file__).resolve().parent
PY = sys.executable


async def start_stack(
    name: str, args: argparse.Namespace, log_dir: Path, code: Path | None, started: list
) -> dict[str, Any]:
    """One processor and one gateway (from ``code`` on PYTHONPATH, else this checkout)."""
    out: Path = args.out
    queue = f"bench.stalls.{uuid.uuid4().hex[:8]}"
    common = ["--rabbitmq-url", args.rabbitmq_url, "--input-queue", queue]
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    probe = [PY, str(BENCH / "gcprobe.py")]
    proc = await procs.start(
        f"{name}-processor",
        [*probe, str(out / f"gc-{name}-processor.json"), "-m", "hopline", "processor", *common,
         *shlex.split(args.processor_args)],
        log_dir, env=env,
    )  # fmt: skip
    started.append(proc)
    gw = await procs.start(
        f"{name}-gateway",
        [*probe, str(out / f"gc-{name}-gateway.json"), "-m", "hopline", "gateway", "--host",
         "127.0.0.1", "--port", "0", *common, *shlex.split(args.gateway_args)],
        log_dir, env=env,
    )  # fmt: skip
    started.append(gw)
    port = int((await gw.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)).group(1))
    url, base = f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"

    async def batching() -> bool:
        return json.loads(await http_get(f"{base}/health")).get("batching") is True

    await until(batching, 30, "batching to be active")
    await until(lambda: round_trip(url, "ready", "ready world"), 30, "an answer")
    return {"name": name, "gw": gw, "proc": proc, "url": url, "queue": queue}


async def window(
    stack: dict[str, Any], i: int, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """One measured open-loop window on ``stack`` (py-spy attached with --profile)."""
    out: Path = args.out
    name, gw, proc = stack["name"], stack["gw"], stack["proc"]
    spy = str(Path(PY).parent / "py-spy")
    load = ["open", "--connections", "100", "--rate", str(args.rate)]
    if args.mode == "closed":
        load = ["closed", "--connections", "50"]
    spies = []
    if args.profile == "py-spy":
        for role, p in (("gateway", gw), ("processor", proc)):
            argv = [spy, "record", "-f", "raw", "--nonblocking", "-r", "250",
                    "-d", str(int(args.duration + args.warmup)), "-p", str(p.pid),
                    "-o", str(out / f"profile-{name}-{role}-{i}.txt")]  # fmt: skip
            spies.append(await procs.start(f"py-spy-{name}-{role}-{i}", argv, log_dir))
    driver = await procs.start(
        f"driver-{name}-{i}",
        [PY, str(BENCH / "driver.py"), *load, "--url", stack["url"],
         "--duration", str(args.duration), "--warmup", str(args.warmup)],
        log_dir, pipe_stdio=True,
    )  # fmt: skip
    broker = procs.broker_pid() or 0
    watch = CpuWatch(
        {"gateway": gw.pid, "processor": proc.pid, "broker": broker, "driver": driver.pid}
    )
    result: dict[str, Any] = {}
    t_begin = t_end = 0.0
    assert driver.process.stdout is not None
    while line := await driver.process.stdout.readline():
        event = json.loads(line)
        if event["event"] == "window-start":
            watch.begin()
            t_begin = time.time()
        elif event["event"] == "window-end":
            watch.end()
            t_end = time.time()
        elif event["event"] == "result":
            result = event
    await driver.process.wait()
    for s in spies:
        await s.process.wait()
    result.pop("hist", None)
    result["code"] = name
    result["window_unix"] = [round(t_begin, 3), round(t_end, 3)]
    result["cpu_cores"] = watch.cores
    replies_per_s = result["throughput"] if args.mode == "closed" else args.rate
    result["per_reply_us"] = {k: round(v / replies_per_s * 1e6, 1) for k, v in watch.cores.items()}
    # Milliseconds per second each process was runnable but waited for a CPU.
    span = max(t_end - t_begin, 1e-9)
    result["runq_wait_ms_per_s"] = {
        k: round(c.get("runq_us", 0) / span / 1000, 1) for k, c in watch.counts.items()
    }
    result["involuntary_switches_per_s"] = {
        k: round(c.get("ivcs", 0) / span, 1) for k, c in watch.counts.items()
    }
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.profile == "py-spy":
        result["profile"] = {}
        for role in ("gateway", "processor"):
            path = out / f"profile-{name}-{role}-{i}.txt"
            if path.exists():
                lines = path.read_text().splitlines()
                result["profile"][role] = report.collapse_profile(lines, top=20)
    print(
        f"[{time.strftime('%H:%M:%S')}] {name} {result['throughput']:,.0f}/s: "
        f"p50 {result['p50_ms']:.2f} "
        f"p99 {result['p99_ms']:.2f} max {result['max_ms']:.1f} ms, sent {result['sent']} "
        f"ok {result['ok']}, us/reply {result['per_reply_us']}, runq ms/s "
        f"{result['runq_wait_ms_per_s']}, load {result['load_average']}",
        file=sys.stderr,
    )
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack(s), drive ``--repeat`` windows on each in turn, stop; the summary."""
    log_dir = Path(tempfile.mkdtemp(prefix="hopline-stalls-"))
    started: list[procs.Proc] = []
    stacks = []
    try:
        stacks.append(await start_stack("new", args, log_dir, args.code, started))
        if args.compare:
            stacks.append(await start_stack("base", args, log_dir, args.compare, started))
        windows = []
        for i in range(args.repeat):
            for stack in stacks if i % 2 == 0 else reversed(stacks):
                windows.append(await window(stack, i, args, log_dir))
    finally:
        for p in reversed(started):
            await p.stop()
        for stack in stacks:
            await _delete(args.rabbitmq_url, [stack["queue"], f"{stack['queue']}.batch"])
    gc_stats = {}
    for path in sorted(args.out.glob("gc-*.json")):
        stats = json.loads(path.read_text())
        key = path.stem.removeprefix("gc-")
        spans = [w["window_unix"] for w in windows if key.startswith(w["code"] + "-")]
        inside = [e for e in stats["events"] if any(a <= e[0] <= b for a, b in spans)]
        stats["in_windows"] = {
            "collections": len(inside),
            "total_ms": round(sum(e[2] for e in inside), 3),
            "max_ms": max((e[2] for e in inside), default=0.0),
            "by_generation": [sum(1 for e in inside if e[1] == g) for g in range(3)],
        }
        del stats["events"]
        gc_stats[key] = stats
    means = {}
    for stack in stacks:
        mine = [w for w in windows if w["code"] == stack["name"]]
        means[stack["name"]] = {
            role: round(sum(w["per_reply_us"][role] for w in mine) / len(mine), 1)
            for role in ("gateway", "processor", "broker", "driver", "others")
        } | {
            "p50_ms_median": sorted(w["p50_ms"] for w in mine)[len(mine) // 2],
            "p99_ms_median": sorted(w["p99_ms"] for w in mine)[len(mine) // 2],
        }
    return {"rate": args.rate, "windows": windows, "gc": gc_stats, "mean_per_reply_us": means}


async def _delete(url: str, queues: list[str]) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        for name in queues:
            channel = await conn.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)


def main() -> None:
    """Parse arguments, run, print and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=3500.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", choices=["none", "py-spy"], default="none")
    parser.add_argument("--out", type=Path, default=Path("/tmp/hopline-stalls"))
    parser.add_argument(
        "--code", type=Path, help="run the first stack from this source tree (PYTHONPATH)"
    )
    parser.add_argument(
        "--mode",
        choices=["open", "closed"],
        default="open",
        help="open loop at --rate, or closed loop (50 connections, one request in flight each)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="also run a stack from this source tree (PYTHONPATH), windows alternating",
    )
    parser.add_argument("--gateway-args", default="")
    parser.add_argument("--processor-args", default="")
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = asyncio.run(main_async(args))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, g in summary["gc"].items():
        print(f"gc {name}: {g}", file=sys.stderr)
    print(f"mean CPU us per reply: {summary['mean_per_reply_us']}", file=sys.stderr)
    for w in summary["windows"][: len(summary["mean_per_reply_us"])]:
        for name, prof in w.get("profile", {}).items():
            name = f"{w['code']} {name}"
            print(f"\n{name} python_self:", file=sys.stderr)
            for frame, share in prof.get("python_self", [])[:12]:
                print(f"  {share:6.1%}  {frame}", file=sys.stderr)
            print(f"{name} self (all leaves):", file=sys.stderr)
            for frame, share in prof.get("self", [])[:8]:
                print(f"  {share:6.1%}  {frame}", file=sys.stderr)


if __name__ == "__main__":
    main()
