"""The outcome of a run for people (a rich table) and for machines (the JSON report).

JSON report schema (``schema: "hopline.loadtest/1"``); times in milliseconds
unless the key says ``_s``; latency keys are ``null`` when there was no reply::

    {
      "schema": "hopline.loadtest/1",
      "version": "<hopline version>",
      "started_at": "2026-11-30T21:00:00Z",       # wall clock, UTC
      "result": "pass" | "fail" | "no_connection",
      "exit_code": 0 | 1 | 4 | 130,
      "interrupted": false,                         # stopped early with Ctrl-C
      "settings": {"url", "protocol", "model": "closed"|"open", "connections", "procs",
                   "in_flight", "think_s", "rate", "duration_s", "ramp_up_s", "requests",
                   "timeout_s", "connect_timeout_s", "message", "expect", "ledger",
                   "token": true|false},            # whether a token was sent (never the token)
      "elapsed_s": 10.01,                           # load start -> end of sending or last
                                                    # request resolved, whichever is later
      "requests": {"sent", "ok", "mismatch", "error", "timeout", "disconnect",
                   "errors",                        # sent - ok
                   "unsent", "late", "unmatched_replies"},
      "error_codes": {"busy": 3, ...},              # error replies by code
      "throughput": {"sent_per_s", "replies_per_s", "ok_per_s"},
      "latency_ms": {"count", "min", "mean", "p50", "p90", "p99", "p999", "max"},
                                                    # to the last chunk of a streamed reply
      "first_chunk_ms": {... as latency_ms},        # to the first chunk (= latency_ms for
                                                    # replies in one frame; no error replies)
      "chunks": {"streamed_replies",                # replies in more than one frame
                 "total", "per_streamed_reply"},    # their frames (null: none streamed)
      "connections": {"target", "opened", "failed", "failures": {"refused": 2, ...},
                      "max_open", "drops", "reconnects",
                      "connect_ms": {"count", "min", "mean", "p50", "p90", "p99", "p999",
                                     "max"}},
      "series": [{"t": 0, "sent", "replies", "ok", "errors", "open_connections",
                  "p50_ms", "p99_ms", "max_ms"}, ...],  # one entry per second of load;
                                                    # the last may be a partial second (drain)
      "slo": [{"expr": "p99<50ms", "metric": "p99", "op": "<", "threshold": 50.0,
               "unit": "ms", "actual": 12.3, "passed": true}, ...]
    }
"""

from __future__ import annotations

import datetime
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.runner import RunResult
from loadtest.slo import SLOResult, measure
from loadtest.stats import Outcome, latency_summary
from loadtest.worker import LATE_AFTER

__all__ = ["SCHEMA", "build_report", "render", "slo_metrics", "write_json"]

SCHEMA = "hopline.loadtest/1"


def _version() -> str:
    try:
        return version("hopline")
    except PackageNotFoundError:
        return "unknown"


def slo_metrics(result: RunResult) -> dict[str, float | None]:
    """The values ``--slo`` thresholds are checked against (see :mod:`loadtest.slo`)."""
    latency = latency_summary(result.aggregate.total)
    c = result.aggregate.counters
    elapsed = result.elapsed
    out: dict[str, float | None] = {
        name: (None if latency[name] is None else float(latency[name]))  # type: ignore[arg-type]
        for name in ("p50", "p90", "p99", "p999", "max", "mean")
    }
    out["errors"] = result.aggregate.errors
    out["timeouts"] = c["timeout"] + result.aggregate.error_codes.get("timeout", 0)
    out["rate"] = round(c["ok"] / elapsed, 1) if elapsed > 0 else 0.0
    out["sent"] = c["sent"]
    return out


def build_report(result: RunResult, slos: list[SLOResult], exit_code: int) -> dict[str, Any]:
    """The JSON report (schema in the module docstring)."""
    agg = result.aggregate
    c = agg.counters
    elapsed = result.elapsed
    replies = c["ok"] + c["mismatch"] + c["error"]
    settings = result.settings
    failed = sum(result.connect_failures.values())
    started = datetime.datetime.fromtimestamp(result.started_at, datetime.UTC)
    outcome = "pass" if exit_code == 0 else "fail"
    if not result.connected:
        outcome = "no_connection"

    def per_s(n: int) -> float:
        return round(n / elapsed, 1) if elapsed > 0 else 0.0

    return {
        "schema": SCHEMA,
        "version": _version(),
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "result": outcome,
        "exit_code": exit_code,
        "interrupted": result.interrupted,
        "settings": settings.as_json(),
        "elapsed_s": round(elapsed, 3),
        "requests": {
            "sent": c["sent"],
            **{o.value: c[o.value] for o in Outcome},
            "errors": agg.errors,
            "unsent": c["unsent"],
            "late": c["late"],
            "unmatched_replies": c["unmatched"],
        },
        "error_codes": dict(sorted(agg.error_codes.items())),
        "throughput": {
            "sent_per_s": per_s(c["sent"]),
            "replies_per_s": per_s(replies),
            "ok_per_s": per_s(c["ok"]),
        },
        "latency_ms": latency_summary(agg.total),
        "first_chunk_ms": latency_summary(result.first_chunk_hist),
        "chunks": {
            "total": result.chunks,
            "streamed_replies": result.streamed,
            "per_streamed_reply": (
                round(
                    (result.chunks - (replies - c["error"] - result.streamed)) / result.streamed, 1
                )
                if result.streamed
                else None
            ),
        },
        "connections": {
            "target": settings.connections,
            "opened": result.opened,
            "failed": failed,
            "failures": dict(sorted(result.connect_failures.items())),
            "max_open": result.max_open,
            "drops": result.drops,
            "reconnects": result.reconnects,
            "connect_ms": latency_summary(result.connect_hist),
        },
        "series": [entry for entry in agg.series() if entry["t"] >= 0],
        "slo": [
            {
                "expr": r.slo.text,
                "metric": r.slo.metric,
                "op": r.slo.op,
                "threshold": r.slo.threshold,
                "unit": r.slo.unit,
                "actual": r.actual,
                "passed": r.passed,
            }
            for r in slos
        ],
    }


def write_json(path: str, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` (``-`` for stdout)."""
    text = json.dumps(report, indent=2) + "\n"
    if path == "-":
        print(text, end="")
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def render(report: dict[str, Any], console: Console) -> None:
    """Print the human summary of ``report``."""
    s = report["settings"]
    req = report["requests"]
    lat = report["latency_ms"]
    conn = report["connections"]
    thr = report["throughput"]
    model = (
        f"open, {s['rate']:g} req/s"
        if s["model"] == "open"
        else f"closed, {s['in_flight']} in flight"
        + (f", think {s['think_s'] * 1000:g} ms" if s["think_s"] else "")
    )
    title = (
        f"hopline loadtest: {s['url']} ({s['protocol']}), {s['connections']} connections, "
        f"{model}, {report['elapsed_s']:.1f} s"
    )
    console.print(title, style="bold", markup=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    sent = req["sent"]

    def share(n: int) -> str:
        return f"{n}" + (f" ({100 * n / sent:.2f}%)" if sent and n else "")

    table.add_row("requests", f"{sent} sent, {req['ok']} ok, {req['errors']} errors")
    table.add_row(
        "outcomes",
        f"ok {share(req['ok'])} · mismatch {share(req['mismatch'])} · "
        f"error {share(req['error'])} · timeout {share(req['timeout'])} · "
        f"disconnect {share(req['disconnect'])}",
    )
    if report["error_codes"]:
        codes = ", ".join(f"{k} {v}" for k, v in report["error_codes"].items())
        table.add_row("error replies", codes)
    if s["model"] == "open" or req["unsent"] or req["late"]:
        late_ms = f"{LATE_AFTER * 1000:g}"
        table.add_row("schedule", f"late {req['late']} (>{late_ms} ms) · unsent {req['unsent']}")
    if req["unmatched_replies"]:
        table.add_row("unmatched", f"{req['unmatched_replies']} replies matched no request")
    table.add_row(
        "throughput",
        f"{thr['ok_per_s']:,.1f} ok/s · {thr['replies_per_s']:,.1f} replies/s · "
        f"{thr['sent_per_s']:,.1f} sent/s",
    )
    table.add_row(
        "latency",
        f"p50 {_ms(lat['p50'])} · p90 {_ms(lat['p90'])} · p99 {_ms(lat['p99'])} · "
        f"p99.9 {_ms(lat['p999'])} · max {_ms(lat['max'])}",
    )
    chunks = report.get("chunks") or {}
    if chunks.get("streamed_replies"):
        fc = report["first_chunk_ms"]
        table.add_row(
            "streamed",
            f"{chunks['streamed_replies']} replies · "
            f"{chunks['per_streamed_reply']:g} chunks each · first chunk p50 {_ms(fc['p50'])}"
            f" · p99 {_ms(fc['p99'])} (latency: to the last)",
        )
    cms = conn["connect_ms"]
    table.add_row(
        "connections",
        f"{conn['opened']}/{conn['target']} opened · {conn['failed']} failed · "
        f"{conn['drops']} dropped · {conn['reconnects']} reconnects",
    )
    table.add_row(
        "connect time",
        f"p50 {_ms(cms['p50'])} · p99 {_ms(cms['p99'])} · max {_ms(cms['max'])}",
    )
    if conn["failures"]:
        failures = ", ".join(f"{k}: {v}" for k, v in conn["failures"].items())
        table.add_row("connect failures", failures)
    for slo in report["slo"]:
        mark = "[green]pass[/]" if slo["passed"] else "[red]FAIL[/]"
        actual = "-" if slo["actual"] is None else measure(slo["actual"], slo["unit"])
        table.add_row("slo", f"{mark} {slo['expr']} (actual {actual})")
    if report["interrupted"]:
        table.add_row("note", "[yellow]interrupted: stopped sending early[/]")
    console.print(table)
