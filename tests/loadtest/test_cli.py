"""hopline loadtest as a user runs it: exit codes, SLOs, JSON report, --smoke, --procs."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hopline.cli import main
from tests.loadtest.servers import EchoServer


def hopline(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["loadtest", *args], env=env, catch_exceptions=False)


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def server() -> Any:
    with EchoServer() as s:
        yield s


def test_smoke_passes_and_writes_the_report(server: EchoServer, tmp_path: Path) -> None:
    """The CI invocation exits 0 and writes a report whose counts add up."""
    out = tmp_path / "report.json"
    result = hopline(
        "--smoke", "--slo", "errors==0", "--slo", "p99<500ms", "--json", str(out),
        env={"HOPLINE_URL": server.url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = report(out)
    assert data["schema"] == "hopline.loadtest/1"
    assert data["result"] == "pass"
    assert data["settings"]["connections"] == 20
    assert data["settings"]["duration_s"] == 5.0
    req = data["requests"]
    assert req["sent"] == req["ok"] > 0
    assert sum(req[k] for k in ("ok", "mismatch", "error", "timeout", "disconnect")) == req["sent"]
    assert [s["passed"] for s in data["slo"]] == [True, True]
    assert data["latency_ms"]["count"] == req["sent"]
    assert 4 <= len(data["series"]) <= 7
    assert sum(s["sent"] for s in data["series"]) == req["sent"]
    assert data["connections"]["opened"] == 20


def test_missed_slo_exits_1_and_names_it(server: EchoServer, tmp_path: Path) -> None:
    """A missed threshold exits 1 and names that threshold, and only that one."""
    result = hopline(
        "--url", server.url, "-n", "50", "--procs", "1", "-q",
        "--slo", "p99<1us", "--slo", "errors==0",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "SLO missed: p99<1us" in result.stderr
    assert "errors==0:" not in result.stderr
    # The report's SLO rows give the actual value with its unit (issue 14).
    assert re.search(r"p99<1us \(actual [0-9.]+ ms\)", result.stdout), result.stdout
    assert re.search(r"errors==0 \(actual 0\)", result.stdout), result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "p98<5ms"], "unknown SLO metric 'p98'"),
        (["--slo", "p99<5"], "needs a unit"),
        (["--slo", "errors=0"], "did you mean '=='"),
        (["--duration", "10 seconds"], "unknown unit 'seconds'"),
        (["--rate", "100", "--in-flight", "4"], "closed model"),
        (["--protocol", "hopline.v2"], "hopline.v2"),
        (["--url", "http://127.0.0.1:9/ws"], "not a ws:// or wss:// URL"),
        (["--url", "localhost:8000"], "did you mean ws://localhost:8000/ws?"),
        (["--json", "/nonexistent/r.json"], "does not exist"),
    ],
)
def test_usage_errors_exit_2_before_connecting(args: list[str], message: str) -> None:
    """Typos and contradictions are usage errors (exit 2) saying what is wrong."""
    result = hopline("--url", "ws://127.0.0.1:9/ws", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_no_connection_exits_4(tmp_path: Path) -> None:
    """When no connection can be made: exit 4, the reason, and a report saying so."""
    with EchoServer() as gone:
        url = gone.url
    out = tmp_path / "r.json"
    result = hopline("--url", url, "-c", "3", "--procs", "1", "-q", "--json", str(out))
    assert result.exit_code == 4
    assert "no connection could be made" in result.stderr
    assert "refused: 3" in result.stderr
    assert report(out)["result"] == "no_connection"


def test_two_processes_count_the_same_as_one(server: EchoServer, tmp_path: Path) -> None:
    """--procs 2 and --procs 1 with the same request budget report the same counts."""
    counts = []
    for procs in ("1", "2"):
        out, ledger = tmp_path / f"r{procs}.json", tmp_path / f"l{procs}.csv"
        result = hopline(
            "--url", server.url, "-c", "4", "-n", "300", "--procs", procs, "-q",
            "--json", str(out), "--ledger", str(ledger),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        data = report(out)
        assert data["settings"]["procs"] == int(procs)
        assert len(ledger.read_text().splitlines()) == 301  # header + one row per request
        opened = data["connections"]["opened"]
        counts.append((data["requests"], data["latency_ms"]["count"], opened))
    assert counts[0] == counts[1]
    assert counts[0][0]["ok"] == 300


def test_options_fall_back_to_environment(server: EchoServer, tmp_path: Path) -> None:
    """Every option reads HOPLINE_<OPTION> when not given (docs/configuration.md)."""
    out = tmp_path / "r.json"
    env = {
        "HOPLINE_URL": server.url,
        "HOPLINE_CONNECTIONS": "3",
        "HOPLINE_REQUESTS": "30",
        "HOPLINE_PROCS": "1",
        "HOPLINE_PROTOCOL": "plain",
        "HOPLINE_JSON": str(out),
        "HOPLINE_QUIET": "1",
    }
    result = hopline(env=env)
    assert result.exit_code == 0, result.output
    data = report(out)
    assert (data["settings"]["connections"], data["settings"]["protocol"]) == (3, "plain")
    assert data["requests"]["ok"] == 30


def test_help_shows_env_vars_and_defaults() -> None:
    """--help names each option's environment variable and default."""
    result = hopline("--help")
    text = " ".join(result.output.split())
    for needle in (
        "HOPLINE_URL",
        "default: ws://localhost:8000/ws",
        "HOPLINE_CONNECTIONS",
        "HOPLINE_SLO",
        "HOPLINE_LOADTEST_TIMEOUT",
        "default: hopline.v1",
        "default: world",
        "default: (CPU count)",
    ):
        assert needle in text, needle


def test_progress_lines_when_not_a_terminal(server: EchoServer) -> None:
    """Without a TTY, progress is plain lines on stderr; --quiet prints none."""
    loud = hopline("--url", server.url, "-c", "2", "-d", "2.5s", "--procs", "1")
    quiet = hopline("--url", server.url, "-c", "2", "-d", "1s", "--procs", "1", "-q")
    assert "loadtest " in loud.stderr and "sent " in loud.stderr
    assert quiet.stderr == ""
    assert "latency" in quiet.stdout


PROGRESS = re.compile(r"loadtest (\d+)s/(\d+)s · conns (\d+)/(\d+) · .* · rate (\d+)/s · ")


def test_progress_without_a_terminal_is_a_line_every_2_s_with_the_whole_rate(
    server: EchoServer,
) -> None:
    """Piped stderr (CI): a progress line every 2 s, however the reports fall, and with 3
    worker processes the rate shown is the whole --rate, not one worker's share."""
    with subprocess.Popen(
        [sys.executable, "-m", "hopline", "loadtest", "--url", server.url,
         "--rate", "300", "-c", "6", "--procs", "3", "-d", "10s", "--ramp-up", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        lines: list[tuple[float, str]] = []
        for line in proc.stderr:  # ends when loadtest exits
            lines.append((time.monotonic(), line.rstrip("\n")))
        assert proc.wait(timeout=30) == 0, lines
    shown = [(at, PROGRESS.search(text)) for at, text in lines if text.startswith("loadtest ")]
    assert all(match for _, match in shown), lines
    assert len(shown) >= 4, lines
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(shown)]
    assert all(abs(gap - 2.0) < 0.4 for gap in gaps), gaps
    under_load = [m for _, m in shown if m is not None and int(m.group(1)) < int(m.group(2))]
    assert len(under_load) >= 3, lines
    for match in under_load:
        assert match.group(3, 4) == ("6", "6"), match.group(0)
        assert 270 <= int(match.group(5)) <= 330, match.group(0)


@pytest.mark.parametrize("procs", ["1", "2"])
def test_ctrl_c_reports_then_says_interrupted(server: EchoServer, procs: str) -> None:
    """Ctrl-C stops a run early: the report still prints, then the one line every command
    says after Ctrl-C, and exit 130 (in one process and with worker processes)."""
    with subprocess.Popen(
        [sys.executable, "-m", "hopline", "loadtest", "--url", server.url,
         "-c", "2", "-d", "60s", "--procs", procs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("loadtest "), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.count("hopline: interrupted") == 1
    assert err.splitlines()[-1] == "hopline: interrupted", err
    assert "latency" in out
