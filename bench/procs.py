"""Subprocesses the benchmark starts, and what /proc tells about any process.

Every process is started by :func:`start` with its stderr (and, unless piped,
stdout) going to a log file, and is stopped by :meth:`Proc.stop` (SIGTERM, then
SIGKILL after a deadline). CPU and memory come from ``/proc/<pid>/stat`` and
``/proc/<pid>/status``, so they can be sampled for processes the benchmark did
not start (the broker) without touching them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Proc",
    "broker_pid",
    "children",
    "counters",
    "cpu_seconds",
    "free_port",
    "listen_overflows",
    "machine_busy_seconds",
    "rss_kib",
    "start",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (0.0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat, everything but idle and iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def listen_overflows() -> int:
    """Times a listen queue overflowed on this host (TcpExt ListenOverflows), -1 if unknown."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", -1))
    return -1


def counters(pid: int) -> dict[str, int]:
    """Syscall and context-switch counts of ``pid``: ``syscr``, ``syscw``, ``vcs``, ``ivcs``.

    ``syscr``/``syscw`` count read-like and write-like syscalls (/proc/<pid>/io);
    ``vcs``/``ivcs`` voluntary and involuntary (preempted) context switches;
    ``runq_us``: microseconds its threads spent runnable but waiting for a CPU
    (/proc/<pid>/schedstat). Empty when the process is gone or not readable.
    """
    out: dict[str, int] = {}
    try:
        out["runq_us"] = sum(
            int((task / "schedstat").read_text().split()[1]) // 1000
            for task in Path(f"/proc/{pid}/task").iterdir()
        )
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("syscr", "syscw"):
                out[key] = int(value)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "voluntary_ctxt_switches":
                out["vcs"] = int(value)
            elif key == "nonvoluntary_ctxt_switches":
                out["ivcs"] = int(value)
    except OSError:
        return {}
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children), oldest first."""
    out: list[int] = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        with contextlib.suppress(OSError, ValueError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return sorted(out)


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of ``pid`` in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def broker_pid(port: int = 5672) -> int | None:
    """The pid of the RabbitMQ node (``beam.smp``) listening on ``port``, if one runs here."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "beam.smp":
                continue
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Proc:
    """A started subprocess and its log file."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        """Its pid."""
        return self.process.pid

    def log_text(self) -> str:
        """Everything it wrote to its log so far."""
        return self.log.read_text(errors="replace")

    async def wait_log(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until its log matches ``pattern``.

        Raises:
            RuntimeError: it exited first, or ``timeout`` passed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            match = re.search(pattern, self.log_text())
            if match:
                return match
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = self.log_text()[-600:]
        raise RuntimeError(f"{self.name} did not log {pattern!r} in time; log tail:\n{tail}")

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


async def start(
    name: str,
    argv: list[str],
    log_dir: Path,
    *,
    pipe_stdio: bool = False,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start ``argv`` with a raised open-files limit; stderr (and stdout unless piped) to a log."""
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if pipe_stdio else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipe_stdio else handle,
            stderr=handle,
            env={**os.environ, **(env or {})},
            preexec_fn=_raise_nofile,
            limit=2**24,
        )
    finally:
        handle.close()
    return Proc(name, process, log)
