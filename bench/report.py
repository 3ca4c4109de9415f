"""Pure reporting for the benchmark: targets, ratios, the Markdown table, profile summaries.

No I/O here: :mod:`run` and :mod:`scenarios` gather the numbers, these functions turn them into the
``targets`` section of the JSON and the printed table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "collapse_profile",
    "cpu_table",
    "markdown_table",
    "merge_parts",
    "per_request",
    "targets",
    "verify",
]

# Goals of issue 7.
THROUGHPUT_X = 10.0
OPEN_P99_FRACTION = 0.25
RSS_PER_CONN_KIB = 20.0
ACCEPT_RATE = 1000.0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def targets(s: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each target of the issue: measured value, goal, met. Missing scenarios are skipped."""
    out: dict[str, dict[str, Any]] = {}
    if "closed_reference" in s and "closed_hopline" in s:
        x = _ratio(s["closed_hopline"]["throughput"], s["closed_reference"]["throughput"])
        out["throughput_vs_reference"] = _goal(x, THROUGHPUT_X, higher=True, unit="x")
    if "closed_reference" in s and "closed_hopline" in s:
        own = [_own_cpu_us(s["closed_reference"]), _own_cpu_us(s["closed_hopline"])]
        out["cpu_per_reply_reference_over_hopline"] = _report(_ratio(own[0], own[1]))
    if "open_reference" in s and "open_hopline" in s:
        f = _ratio(s["open_hopline"]["p99_ms"], s["open_reference"]["p99_ms"])
        out["open_p99_vs_reference"] = _goal(f, OPEN_P99_FRACTION, higher=False, unit="x")
    if "scale_hopline" in s:
        sc = s["scale_hopline"]
        out["scale_connections_answered"] = _goal(
            sc["ok"], sc["target_connections"], higher=True, unit="sockets"
        )
        out["rss_per_idle_connection_kib"] = _goal(
            sc["rss_per_connection_kib"], RSS_PER_CONN_KIB, higher=False, unit="KiB"
        )
        out["accept_rate_per_s"] = _goal(sc["accept_rate"], ACCEPT_RATE, higher=True, unit="/s")
    if "open_low_reference" in s and "open_low_hopline" in s:
        out["open_p99_vs_reference_at_low_rate"] = _report(
            _ratio(s["open_low_hopline"]["p99_ms"], s["open_low_reference"]["p99_ms"])
        )
    if "scale_hopline" in s and "scale_echo" in s:
        hop_sc, echo_sc = s["scale_hopline"], s["scale_echo"]
        out["accept_rate_vs_bare_websockets"] = _report(
            _ratio(hop_sc["accept_rate"], echo_sc["accept_rate"])
        )
        out["rss_per_connection_vs_bare_websockets"] = _report(
            _ratio(hop_sc["rss_per_connection_kib"], echo_sc["rss_per_connection_kib"])
        )
    hop = s.get("closed_hopline", {}).get("throughput")
    if hop is not None and "ceiling_echo" in s:
        out["fraction_of_echo_ceiling"] = _report(_ratio(hop, s["ceiling_echo"]["throughput"]))
    if hop is not None and "ceiling_amqp" in s:
        out["fraction_of_amqp_ceiling"] = _report(_ratio(hop, s["ceiling_amqp"]["throughput"]))
    return out


def _own_cpu_us(r: dict[str, Any]) -> float:
    """CPU µs per reply of the measured processes (not the machine's other load)."""
    return sum(v["cpu_us"] for k, v in per_request(r).items() if k not in ("machine", "others"))


def _number(x: float) -> str:
    """Three significant digits, with thousands separators for large numbers."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _report(value: float | None) -> dict[str, Any]:
    return {"value": value, "goal": None, "met": None, "unit": "x"}


def _goal(value: float | None, goal: float, *, higher: bool, unit: str) -> dict[str, Any]:
    met = None if value is None else (value >= goal if higher else value <= goal)
    return {"value": value, "goal": goal, "higher_is_better": higher, "met": met, "unit": unit}


SUMMED = ("sent", "ok", "wrong", "errors", "lost", "measured", "window_s", "driver_cpu_s")


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the slices of a scenario measured in several rounds.

    Counts and windows add up, histograms merge (so percentiles are over every
    reply of every slice), CPU is the average over the slices, and ``parts`` keeps
    each slice's throughput, p99 and the machine's other load for inspection.
    """
    merged: dict[str, Any] = {k: v for k, v in parts[0].items() if k not in ("hist",)}
    for key in SUMMED:
        merged[key] = round(sum(p.get(key, 0) for p in parts), 3)
    hist: HdrHistogram | None = None
    for p in parts:
        h = HdrHistogram.decode(p["hist"])
        if hist is None:
            hist = h
        else:
            hist.add(h)
    assert hist is not None
    merged["throughput"] = round(merged["measured"] / merged["window_s"], 1)
    for name, pct in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("p999_ms", 99.9)):
        merged[name] = hist.get_value_at_percentile(pct) / 1000
    merged["max_ms"] = hist.get_max_value() / 1000
    merged["hist"] = hist.encode().decode()
    names = {n for p in parts for n in p.get("cpu_cores", {})}
    merged["cpu_cores"] = {
        n: round(sum(p["cpu_cores"].get(n, 0.0) for p in parts) / len(parts), 3) for n in names
    }
    counts: dict[str, dict[str, int]] = {}
    for p in parts:
        for proc, c in p.get("syscalls_and_switches", {}).items():
            row = counts.setdefault(proc, {})
            for k, v in c.items():
                row[k] = row.get(k, 0) + v
    merged["syscalls_and_switches"] = counts
    if "publish_batches" in parts[0]:
        flushes = sum(p["publish_batches"]["flushes"] for p in parts)
        requests = sum(p["publish_batches"]["requests"] for p in parts)
        buckets: dict[str, int] = {}
        for p in parts:
            for le, v in p["publish_batches"]["cumulative_buckets"].items():
                buckets[le] = buckets.get(le, 0) + v
        merged["publish_batches"] = {
            "flushes": flushes,
            "requests": requests,
            "mean_requests_per_flush": round(requests / flushes, 2) if flushes else None,
            "cumulative_buckets": buckets,
        }
        rts = [p["gateway_round_trip"] for p in parts]
        count = sum(r["count"] for r in rts)
        mean = sum((r["mean_ms"] or 0) * r["count"] for r in rts) / count if count else None
        merged["gateway_round_trip"] = {
            "count": count,
            "mean_ms": None if mean is None else round(mean, 3),
            "p50_at_most_ms": max((r["p50_at_most_ms"] or 0) for r in rts),
            "p99_at_most_ms": max((r["p99_at_most_ms"] or 0) for r in rts),
        }
    merged["parts"] = [
        {
            "throughput": p["throughput"],
            "p50_ms": p["p50_ms"],
            "p99_ms": p["p99_ms"],
            "others_cores": p.get("cpu_cores", {}).get("others"),
        }
        for p in parts
    ]
    return merged


def per_request(r: dict[str, Any]) -> dict[str, dict[str, float]]:
    """CPU microseconds and syscalls per answered request, per process, over the window.

    ``runq_wait_per_s_ms`` is not per request: milliseconds per second the process'
    threads were ready to run but waited for a CPU (scheduler contention).
    """
    thr = r.get("throughput") or 0.0
    if not thr:
        return {}
    window = r.get("window_s") or 0.0
    out: dict[str, dict[str, float]] = {}
    for name, cores in r.get("cpu_cores", {}).items():
        row = {"cpu_us": round(cores / thr * 1e6, 1)}
        counts = r.get("syscalls_and_switches", {}).get(name, {})
        for key in ("syscr", "syscw", "ivcs"):
            if key in counts and window:
                row[key] = round(counts[key] / (thr * window), 3)
        if "runq_us" in counts and window:
            row["runq_wait_per_s_ms"] = round(counts["runq_us"] / window / 1000, 1)
        out[name] = row
    return out


CPU_ROWS = [
    ("closed_reference", "reference"),
    ("closed_hopline", "hopline"),
    ("closed_hopline_persistent", "hopline --persistent"),
    ("ceiling_echo", "bare websockets echo"),
    ("ceiling_amqp", "bare aio-pika RPC"),
]


def cpu_table(s: dict[str, dict[str, Any]]) -> str:
    """Scenario (a): CPU µs per reply by process, and what the rest of the machine used."""
    lines = [
        "| a. closed loop | gateway / server | processor(s) | broker | driver / client | total | "
        "other processes (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in CPU_ROWS:
        r = s.get(key)
        if r is None:
            continue
        per = per_request(r)

        def us(names: tuple[str, ...], per: dict[str, dict[str, float]] = per) -> float:
            return sum(v["cpu_us"] for k, v in per.items() if k.startswith(names))

        gateway = us(("gateway", "server"))
        processor = us(("processor",))
        broker = us(("broker",))
        driver = us(("driver",))
        total = gateway + processor + broker + driver
        others = r.get("cpu_cores", {}).get("others", 0.0)
        lines.append(
            f"| {label} | {gateway:,.0f} | {processor:,.0f} | {broker:,.0f} | {driver:,.0f} | "
            f"{total:,.0f} | {others:.2f} |"
        )
    return "\n".join(lines)


def verify(s: dict[str, dict[str, Any]]) -> list[str]:
    """Problems with the counts: any scenario with a lost, wrong or error reply."""
    problems = []
    for name, r in s.items():
        bad = {k: r.get(k, 0) for k in ("lost", "wrong", "errors")}
        if any(bad.values()) or r.get("ok", 0) != r.get("sent", 0):
            problems.append(f"{name}: sent {r.get('sent')} ok {r.get('ok')} {bad}")
    return problems


ROWS = [
    ("closed_reference", "a. closed loop, 50 conns", "reference"),
    ("closed_hopline", "a. closed loop, 50 conns", "hopline"),
    ("closed_hopline_persistent", "a. closed loop, 50 conns", "hopline --persistent"),
    ("open_reference", "b. open loop 500/s, 100 conns", "reference"),
    ("open_hopline", "b. open loop 500/s, 100 conns", "hopline"),
    ("open_low_reference", "b'. open loop {rate}/s, 100 conns", "reference"),
    ("open_low_hopline", "b'. open loop {rate}/s, 100 conns", "hopline"),
    ("scale_hopline", "c. 1 request on each socket", "hopline"),
    ("scale_echo", "c. 1 request on each socket", "bare websockets echo"),
    ("ceiling_echo", "d. ceiling, 50 conns", "bare websockets echo"),
    ("ceiling_amqp", "d. ceiling, 100 in flight", "bare aio-pika RPC"),
]


def markdown_table(s: dict[str, dict[str, Any]], goals: dict[str, dict[str, Any]]) -> str:
    """The scenarios and the targets as two Markdown tables."""
    lines = [
        "| scenario | system | replies/s | p50 ms | p99 ms | sent = ok |",
        "|---|---|---:|---:|---:|---|",
    ]
    for key, scenario, system in ROWS:
        r = s.get(key)
        if r is None:
            continue
        scenario = scenario.format(rate=f"{r.get('rate', 0):g}")
        if key.startswith("scale_"):
            system = (
                f"{system}, {r['ok']:,} sockets, {r['accept_rate']:,.0f} accepts/s, "
                f"{r['rss_per_connection_kib']:.1f} KiB/socket"
            )
        thr = "-" if key.startswith("scale_") else f"{r['throughput']:,.0f}"
        counts = (
            f"{r['sent']:,} = {r['ok']:,}" if r["ok"] == r["sent"] else f"{r['sent']} != {r['ok']}"
        )
        lines.append(
            f"| {scenario} | {system} | {thr} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {counts} |"
        )
    lines += ["", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    for name, g in goals.items():
        value = "-" if g["value"] is None else f"{_number(g['value'])} {g['unit']}".strip()
        if g["goal"] is None:
            goal = "report"
        else:
            goal = f"{'>=' if g['higher_is_better'] else '<='} {g['goal']:,g} {g['unit']}".strip()
        met = {True: "yes", False: "NO", None: "-"}[g["met"]]
        lines.append(f"| {name} | {value} | {goal} | {met} |")
    return "\n".join(lines)


# Frames every stack starts with (process entry, click, the event loop's run call):
# left out of the inclusive list, which would otherwise open with them.
ROOT_FRAMES = (
    "<frozen runpy>",
    "click/",
    "hopline/__main__.py",
    "hopline/runtime.py",
    "hopline/cli.py",
)


# Leaf frames where a sampled thread is mostly *not* running Python: in a socket
# write syscall (on loopback the sender also does the receiver's TCP work and wakes
# it, which often preempts the sender) or in the event loop's C code. Under CPU
# contention py-spy counts a preempted (runnable) thread as busy, so these leaves
# collect waiting time; ``python_*`` lists leave them out.
WAIT_LEAVES = (
    "StreamWriter.write (",
    "Connection.send_data (websockets/",
    "Session._flush (gateway/session.py",
    "Runner.run (",
)


def collapse_profile(raw_lines: Iterable[str], top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top self and inclusive costs from py-spy ``-f raw`` (collapsed stacks) output.

    Returns:
        ``self`` and ``inclusive``: ``[(frame, share), ...]`` over all non-idle
        samples; ``python_self`` and ``python_inclusive``: the same over the samples
        whose leaf is not in :data:`WAIT_LEAVES` (line numbers dropped, so a
        function's lines add up); ``samples``: ``[("total", n), ("python", n)]``.
        Shares are 0..1, largest first. Under uvloop, self time of ``Runner.run``
        is time in the loop's C code. Entry frames (:data:`ROOT_FRAMES`,
        ``Runner.run``) are left out of the inclusive lists.
    """
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    py_self: Counter[str] = Counter()
    py_incl: Counter[str] = Counter()
    total = python = 0
    for line in raw_lines:
        line = line.rstrip()
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        kept = [f for f in frames if not f.startswith("Runner.run")]
        kept = [f for f in kept if not any(r in f for r in ROOT_FRAMES)]
        for frame in set(kept):
            incl_counts[frame] += count
        if frames[-1].startswith(WAIT_LEAVES):
            continue
        python += count
        py_self[_function(frames[-1])] += count
        for function in {_function(f) for f in kept}:
            py_incl[function] += count
    if total == 0:
        return {"self": [], "inclusive": [], "samples": []}

    def share(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(f, round(c / n, 4)) for f, c in counter.most_common(top)] if n else []

    return {
        "self": share(self_counts, total),
        "inclusive": share(incl_counts, total),
        "python_self": share(py_self, python),
        "python_inclusive": share(py_incl, python),
        "samples": [("total", float(total)), ("python", float(python))],
    }


def _function(frame: str) -> str:
    """``"f (file.py:12)"`` -> ``"f (file.py)"``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name
