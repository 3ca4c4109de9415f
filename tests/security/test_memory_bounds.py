"""Gateway memory stays bounded under abusive loads, and a bystander keeps being answered.

Runs bench/abuse_memory.py (the same harness the issue's figures come from) with
modest sizes against a gateway subprocess; asserts bounds on resident size and
that every bystander request got an answer, never wall-clock times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_bench(rabbitmq_url: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "RABBITMQ_URL": rabbitmq_url}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "abuse_memory.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pipelining_large_requests_to_a_healthy_processor_stays_small(rabbitmq_url: str) -> None:
    """One socket pipelining 16 KiB requests: RSS under 200 MiB, back near the start after."""
    result = run_bench(rabbitmq_url, "pipeline", "--seconds", "8", "--settle", "6")
    assert result["attacker_answered"] > 1000, result
    assert result["rss_peak_mib"] < 200, result
    assert result["rss_after_mib"] < result["rss_start_mib"] + 48, result
    bystander = result["bystander"]
    assert bystander["answered"] >= bystander["sent"] - 1, bystander
    assert set(bystander["kinds"]) == {"ok"}, bystander


def test_many_sockets_of_large_requests_without_a_processor(rabbitmq_url: str) -> None:
    """50 sockets x window x 64 KiB, no processor: RSS bounded, the bystander gets every answer."""
    result = run_bench(
        rabbitmq_url, "stalled", "--sockets", "50", "--seconds", "6", "--settle", "3"
    )
    assert result["rss_peak_mib"] < 500, result
    bystander = result["bystander"]
    assert bystander["sent"] >= 20, bystander
    assert bystander["answered"] >= bystander["sent"] - 1, bystander
    assert "timeout" not in bystander["kinds"], bystander


def test_a_pending_request_costs_its_bookkeeping_only(rabbitmq_url: str) -> None:
    """20,000 small requests held by a stalled processor: under 1 KiB of RSS each (~450 B)."""
    result = run_bench(
        rabbitmq_url, "pending", "--sockets", "20", "--per-socket", "1000", "--stalled-processor"
    )
    assert result["batching"] is True, result
    assert result["pending"] == 20_000, result
    assert result["bytes_per_pending"] < 1024, result
