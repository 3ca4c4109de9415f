"""hopline loadtest against the real gateway and processor (RabbitMQ in between)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gateway.security import mint_token
from tests.conftest import Stack, ws_url
from tests.helpers import eventually


async def loadtest(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``python -m hopline loadtest ARGS --json`` without blocking the test's event loop.

    Returns the exit code, the JSON report and stderr.
    """
    return await finish_loadtest(await start_loadtest(tmp_path, *args), tmp_path)


async def start_loadtest(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    """Start ``python -m hopline loadtest ARGS`` (one process) writing its report in tmp_path."""
    out = tmp_path / "report.json"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hopline", "loadtest", "-q", "--procs", "1", "--json", str(out),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish_loadtest(
    proc: asyncio.subprocess.Process, tmp_path: Path
) -> tuple[int, dict[str, Any], str]:
    """Wait for a :func:`start_loadtest` run: its exit code, JSON report and stderr."""
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads((tmp_path / "report.json").read_text()), err.decode()


async def test_closed_loop_through_the_gateway(stack: Stack, tmp_path: Path) -> None:
    """Every hopline.v1 request through gateway and processor gets its verified reply."""
    gw = await stack.gateway()
    await stack.processor("world")
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "10", "--in-flight", "4", "-n", "800",
        "--slo", "errors==0",
    )  # fmt: skip
    assert code == 0, err
    assert data["requests"]["sent"] == data["requests"]["ok"] == 800
    assert data["latency_ms"]["count"] == 800


async def test_plain_mode_through_the_gateway(stack: Stack, tmp_path: Path) -> None:
    """Plain mode against the gateway matches replies in order and verifies them all."""
    gw = await stack.gateway()
    await stack.processor("world")
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "--protocol", "plain", "-c", "4", "--in-flight", "8",
        "-n", "400",
    )  # fmt: skip
    assert code == 0, err
    assert data["requests"]["ok"] == 400
    assert data["requests"]["unmatched_replies"] == 0


async def test_open_model_through_the_gateway(stack: Stack, tmp_path: Path) -> None:
    """The open model sends rate x duration requests on schedule and all come back."""
    gw = await stack.gateway()
    await stack.processor("world")
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "5", "--rate", "200", "-d", "2s",
    )  # fmt: skip
    assert code == 0, err
    assert data["settings"]["model"] == "open"
    assert data["requests"]["sent"] == data["requests"]["ok"] == 400
    assert data["requests"]["unsent"] == 0


async def test_processor_errors_are_counted_and_fail_the_slo(stack: Stack, tmp_path: Path) -> None:
    """Handler failures come back as processor_error replies; errors==0 then exits 1."""
    gw = await stack.gateway()
    await stack.processor("tests.sample_handlers:explode")
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "2", "-n", "20", "--message", "boom",
        "--slo", "errors==0",
    )  # fmt: skip
    assert code == 1
    assert "SLO missed: errors==0" in err
    assert data["requests"]["error"] == 20
    assert data["error_codes"] == {"processor_error": 20}
    assert data["result"] == "fail"


async def test_failed_handshakes_are_reported_by_reason(stack: Stack, tmp_path: Path) -> None:
    """A wrong path fails every handshake: exit 4, and the report counts 'HTTP 404'."""
    gw = await stack.gateway()
    url = ws_url(gw).replace("/ws", "/nope")
    code, data, err = await loadtest(tmp_path, "--url", url, "-c", "3", "-n", "3")
    assert code == 4
    assert "HTTP 404: 3" in err
    assert data["connections"]["failures"] == {"HTTP 404": 3}


async def test_token_opens_an_authenticated_gateway(stack: Stack, tmp_path: Path) -> None:
    """--token is sent as a bearer token: without it 401, with it every request succeeds."""
    secret = "s3cret-" * 6
    gw = await stack.gateway(token_secret=secret)
    await stack.processor("world")
    code, data, _ = await loadtest(tmp_path, "--url", ws_url(gw), "-c", "2", "-n", "10")
    assert code == 4
    assert data["connections"]["failures"] == {"HTTP 401 (check --token)": 2}
    token = mint_token(secret, 60, time.time())
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "2", "-n", "10", "--token", token
    )
    assert code == 0, err
    assert data["requests"]["ok"] == 10
    assert data["settings"]["token"] is True
    assert token not in (tmp_path / "report.json").read_text()


async def test_streamed_replies_report_time_to_first_chunk_and_chunk_counts(
    stack: Stack, tmp_path: Path
) -> None:
    """A streaming handler: first-chunk percentiles below the last-chunk ones, 5 chunks each."""

    async def five(payload: str | bytes) -> Any:
        for i in range(5):
            await asyncio.sleep(0.02)
            yield f"{i} "

    gw = await stack.gateway()
    await stack.processor(five)
    await stack.batching_ready(gw)
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "4", "--in-flight", "2", "-n", "40",
        "--expect", "none",
    )  # fmt: skip
    assert code == 0, err
    assert data["requests"]["ok"] == 40, data["requests"]
    assert data["chunks"] == {"streamed_replies": 40, "total": 200, "per_streamed_reply": 5.0}
    assert data["requests"]["unmatched_replies"] == 0
    first, last = data["first_chunk_ms"], data["latency_ms"]
    assert first["count"] == last["count"] == 40
    assert first["p50"] < last["p50"], "the first chunk came no earlier than the last"
    assert last["p50"] - first["p50"] >= 40, "chunks 20 ms apart: the last comes >= 60 ms later"


CHUNK_GAP = 0.1  # seconds between the chunks of paced_five


async def paced_five(payload: str | bytes) -> Any:
    """Stream five chunks, CHUNK_GAP apart, the first one after CHUNK_GAP too: a request's first
    chunk cannot reach its client before CHUNK_GAP, nor its last before 5 x CHUNK_GAP."""
    for i in range(5):
        await asyncio.sleep(CHUNK_GAP)
        yield f"{i} "


async def test_open_model_reports_time_to_first_chunk_of_streamed_replies(
    stack: Stack, tmp_path: Path
) -> None:
    """--rate with a streaming handler: every reply streamed in 5 chunks, and the first-chunk
    percentiles sit between the handler's first chunk (>= 100 ms) and well before the last."""
    gw = await stack.gateway()
    await stack.processor(paced_five)
    await stack.batching_ready(gw)
    code, data, err = await loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "4", "--rate", "40", "-d", "2.5s",
        "--expect", "none",
    )  # fmt: skip
    assert code == 0, err
    assert data["settings"]["model"] == "open"
    assert data["requests"]["sent"] == data["requests"]["ok"] == 100, data["requests"]
    assert data["chunks"] == {"streamed_replies": 100, "total": 500, "per_streamed_reply": 5.0}
    first, last = data["first_chunk_ms"], data["latency_ms"]
    print(f"[open model, streamed] first chunk {first}, last chunk {last}")
    assert first["count"] == last["count"] == 100
    gap_ms = CHUNK_GAP * 1000
    assert first["min"] >= gap_ms, "a first chunk before the handler produced one"
    assert last["min"] >= 5 * gap_ms, "a last chunk before the handler produced it"
    # The first chunk leaves 1 or 2 gaps in (the processor emits a chunk once the next one
    # exists), the last 5 gaps in: at least 3 gaps between them for every request.
    assert last["p50"] - first["p50"] >= 2 * gap_ms, "first-chunk figure is the last chunk's"


async def test_open_model_times_first_chunks_from_the_scheduled_send_time(
    stack: Stack, tmp_path: Path
) -> None:
    """The load tester is stopped (SIGSTOP) for 1 s mid-run. Timed from the scheduled send
    time, the ~40 requests due meanwhile or in flight show the stall in their time to first
    chunk (p90 >= 400 ms); timed from the actual send, only the ~8 whose first chunk came
    during the stall would (p90 ~ 200 ms: coordinated omission hides the stall)."""
    stall = 1.0
    gw = await stack.gateway()
    await stack.processor(paced_five)
    await stack.batching_ready(gw)
    proc = await start_loadtest(
        tmp_path, "--url", ws_url(gw), "-c", "4", "--rate", "40", "-d", "3.5s", "--expect", "none"
    )
    try:
        await eventually(
            lambda: gw.metrics.total("hopline_requests_total") >= 10, message="load running"
        )
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(stall)  # the fault itself: the load tester gets no CPU this long
    finally:
        proc.send_signal(signal.SIGCONT)
    code, data, err = await finish_loadtest(proc, tmp_path)
    assert code == 0, err
    assert data["requests"]["sent"] == data["requests"]["ok"] == 140, data["requests"]
    assert data["requests"]["late"] > 0, "nothing was sent late: the stall did not happen"
    first = data["first_chunk_ms"]
    print(f"[open model, stalled {stall:g} s] first chunk {first}")
    assert first["count"] == 140
    assert first["p90"] >= 400, "first chunks timed from the actual send, not the schedule"
    assert first["max"] >= (CHUNK_GAP + 0.8 * stall) * 1000
    assert first["p50"] < 400, "the stall should show in the tail only"
