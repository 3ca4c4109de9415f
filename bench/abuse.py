"""A bystander's latency while one client floods the gateway (issue 15's fair-loop rows).

Usage::

    .venv/bin/python bench/abuse.py [--duration 10] [--interval 0.05] [--json out.json]

Starts one ``hopline gateway`` and one ``hopline processor`` (subprocesses, unique
queue), then for each scenario: a bystander in this process sends ``hello`` every
``--interval`` s on its own socket (one request at a time; latency from send to
reply, ``perf_counter``) while an attacker *in another process* (``attackers.py``)
runs for ``--duration`` s. Scenarios:

* ``baseline``: no attacker.
* ``ping-flood``: one socket writes pings as fast as it can and reads the pongs.
* ``hello-flood``: one socket pipelines ``hello`` as fast as it can, reading replies.
* ``hello-flood-hardened``: the same against ``--rate-limit 20 --rate-burst 20``.
* ``partial-2500``: 2,500 connections from 127.0.0.2 that never finish their HTTP
  request, against the hardened settings with the gateway's open-files limit at
  2,048 (``--partial-extra`` adds options, e.g. ``--max-connections-per-address 50``);
  reports the gateway's peak descriptors and how many got a refusal at once, and
  /health from 127.0.0.1 while they are held.
* ``slow-readers``: 50 sockets each pipelining 200 x 16 KiB requests, then reading
  their replies at ~5 KiB/s (the issue's 1 GiB row); the RSS peak is the figure.
* ``subprotocol-1MB``: 4 workers each open connections sending a 1 MB
  ``Sec-WebSocket-Protocol`` list (128 lines of 8 KB), over and over; reported
  with the gateway CPU per refused handshake (an upper bound on its loop time).

Prints a Markdown table (bystander p50/p99/max, answered/sent, the attacker's
outcome, gateway RSS peak). Exit 0 when the bystander got every answer, 1 if not,
3 if something could not start. Needs RabbitMQ at ``RABBITMQ_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from procs import Proc, cpu_seconds, rss_kib, start
from websockets.asyncio.client import connect

PY = sys.executable
ATTACKERS = Path(__file__).resolve().parent / "attackers.py"  # each attack's own process
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def bystander(port: int, interval: float, stop: asyncio.Event) -> dict[str, object]:
    latencies: list[float] = []
    sent = 0
    async with connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None) as ws:
        while not stop.is_set():
            sent += 1
            t0 = time.perf_counter()
            await ws.send("hello")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await ws.recv()
                    latencies.append(time.perf_counter() - t0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "sent": sent,
        "answered": len(latencies),
        "p50_ms": pct(0.5) if latencies else None,
        "p99_ms": pct(0.99) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
    }


HARDENED = (
    "--max-connections", "1000", "--handshake-timeout", "5", "--rate-limit", "20",
    "--rate-burst", "20", "--write-timeout", "5", "--compression", "none",
)  # fmt: skip


async def _status(port: int, source: str, request: bytes, timeout: float) -> str:
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, request)
            answer = await loop.sock_recv(sock, 200)
        return answer.split(b" ", 2)[1].decode() if answer.count(b" ") >= 2 else "closed"
    except (TimeoutError, OSError):
        return "no answer"
    finally:
        sock.close()


async def partial_handshakes(args: argparse.Namespace, queue: str) -> dict[str, object]:
    """2,500 half-sent handshakes against a gateway limited to 2,048 descriptors."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, 2048))

    extra = tuple(args.partial_extra.split()) if args.partial_extra else ()
    gw = await asyncio.create_subprocess_exec(
        PY, "-m", "hopline", "gateway", "--host", "127.0.0.1", "--port", "0",
        "--input-queue", queue, "--rabbitmq-url", RABBITMQ_URL, *HARDENED, *extra,
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, preexec_fn=limit,
    )  # fmt: skip
    try:
        assert gw.stderr is not None
        port = 0
        while not port:
            line = await gw.stderr.readline()
            if not line:
                raise RuntimeError("the gateway exited")
            if b"listening on ws://" in line:
                port = int(line.split(b":")[-1].split(b"/")[0])
        loop = asyncio.get_running_loop()
        held: list[socket.socket] = []
        peak_fds = 0
        for i in range(2500):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind(("127.0.0.2", 0))
            with contextlib.suppress(OSError):
                await loop.sock_connect(sock, ("127.0.0.1", port))
                await loop.sock_sendall(sock, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
            if i % 50 == 0:
                peak_fds = max(peak_fds, len(os.listdir(f"/proc/{gw.pid}/fd")))
        peak_fds = max(peak_fds, len(os.listdir(f"/proc/{gw.pid}/fd")))
        refused: dict[str, int] = {}
        for sock in held:
            try:
                data = sock.recv(200)
                key = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else "closed"
            except BlockingIOError:
                key = "held"
            except OSError:
                key = "reset"
            refused[key] = refused.get(key, 0) + 1
        health: dict[str, int] = {}
        for _ in range(20):
            status = await _status(port, "127.0.0.1", b"GET /health HTTP/1.1\r\n\r\n", 5)
            health[status] = health.get(status, 0) + 1
        for sock in held:
            sock.close()
        return {
            "gateway_peak_fds": peak_fds,
            "fd_limit": 2048,
            "attack_connections": refused,
            "health_from_another_address": health,
        }
    finally:
        gw.terminate()
        await gw.wait()


SCENARIOS = {
    "baseline": (None, ()),
    "ping-flood": ("ping", ()),
    "hello-flood": ("hello", ()),
    "hello-flood-hardened": ("hello", ("--rate-limit", "20", "--rate-burst", "20")),
    "subprotocol-1MB": ("subprotocol", ()),
    "slow-readers": ("slow", ()),
    "partial-2500": ("partial", ()),
}


async def scenario(
    name: str, args: argparse.Namespace, queue: str, logs: Path
) -> dict[str, object]:
    kind, extra = SCENARIOS[name]
    if kind == "partial":
        return {"scenario": name, "result": await partial_handshakes(args, queue)}
    gw = await start(
        f"gateway-{name}",
        [PY, "-m", "hopline", "gateway", "--host", "127.0.0.1", "--port", "0",
         "--input-queue", queue, "--rabbitmq-url", RABBITMQ_URL, *extra],
        logs,
    )  # fmt: skip
    try:
        port = int((await gw.wait_log(r"listening on ws://[^:]+:(\d+)/ws", 30)).group(1))
        stop = asyncio.Event()
        peak = rss_kib(gw.pid)
        cpu0 = cpu_seconds(gw.pid)
        watching = asyncio.get_running_loop().create_task(bystander(port, args.interval, stop))
        result: dict[str, object] = {}
        if kind is None:
            await asyncio.sleep(args.duration)
        else:
            attack = await asyncio.create_subprocess_exec(
                PY, str(ATTACKERS), kind, "--port", str(port),
                "--duration", str(args.duration),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            waiting = asyncio.get_running_loop().create_task(attack.communicate())
            while not waiting.done():
                peak = max(peak, rss_kib(gw.pid))
                await asyncio.sleep(0.1)
            out, _ = waiting.result()
            result = json.loads(out.decode() or "{}")
        cpu = cpu_seconds(gw.pid) - cpu0
        stop.set()
        by = await watching
        if kind == "subprotocol" and result.get("attempts"):
            result["gateway_cpu_ms_per_attempt"] = round(cpu * 1000 / int(result["attempts"]), 3)
        return {"scenario": name, "bystander": by, "attacker": result, "rss_peak_mib": peak // 1024}
    finally:
        await gw.stop()


async def main(args: argparse.Namespace) -> tuple[int, list[dict[str, object]]]:
    queue = f"bench-abuse-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="hopline-abuse-") as tmp:
        logs = Path(tmp)
        proc: Proc = await start(
            "processor",
            [PY, "-m", "hopline", "processor", "--input-queue", queue, "--rabbitmq-url",
             RABBITMQ_URL],
            logs,
        )  # fmt: skip
        results = []
        try:
            for name in args.scenarios or SCENARIOS:
                results.append(await scenario(name, args, queue, logs))
                print(f"[{time.strftime('%H:%M:%S')}] {json.dumps(results[-1])}", flush=True)
        finally:
            await proc.stop()
            await _delete_queues(queue)
    print("\n| scenario | bystander p50 ms | p99 ms | max ms | answered / sent | attacker | "
          "gateway RSS peak MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---|---|---:|")
    ok = True
    for r in results:
        if "result" in r:
            print(f"| {r['scenario']} | - | - | - | - | {json.dumps(r['result'])} | - |")
            continue
        b = r["bystander"]
        assert isinstance(b, dict)
        ok = ok and b["answered"] == b["sent"]
        print(
            f"| {r['scenario']} | {b['p50_ms']} | {b['p99_ms']} | {b['max_ms']} | "
            f"{b['answered']} / {b['sent']} | {json.dumps(r['attacker'])} | {r['rss_peak_mib']} |"
        )
    return (0 if ok else 1), results


async def _delete_queues(queue: str) -> None:
    import aio_pika

    with contextlib.suppress(Exception):
        conn = await aio_pika.connect(RABBITMQ_URL)
        async with conn:
            for name in (queue, f"{queue}.batch", f"{queue}.dead"):
                channel = await conn.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per attack [10]")
    parser.add_argument("--interval", type=float, default=0.05, help="bystander period [0.05]")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--scenario", dest="scenarios", action="append", choices=SCENARIOS)
    parser.add_argument("--partial-extra", help="gateway options added in partial-2500")
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    try:
        code, found = asyncio.run(main(options))
        if options.json:
            Path(options.json).write_text(json.dumps(found, indent=2) + "\n")
        sys.exit(code)
    except (OSError, RuntimeError) as exc:
        print(f"bench/abuse.py: could not start: {exc}", file=sys.stderr)
        sys.exit(3)
