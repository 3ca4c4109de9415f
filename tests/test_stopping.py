"""A running command stops as a user expects, and leaves nothing behind.

Issue 14's rows that need more than one command line: Ctrl-C exits 130 with one
``hopline: interrupted`` (once, even when a terminal signals the whole process group),
SIGTERM exits 0 silently, ``hopline up`` leaves neither its private broker nor a
password on a command line, and a processor says it is ready. The commands run as a
user runs them (subprocesses, the real broker). The one-line answers to mistakes are
in ``test_unhappy.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from yarl import URL

from hopline.broker_node import free_port
from hopline.wire.amqp import QueueTopology
from tests.conftest import delete_queues
from tests.helpers import children_of, node_processes
from tests.test_unhappy import run_hopline


def start(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, session: bool = False
) -> Popen:
    """Start ``python -m hopline ARGV`` and wait for its ready line (stdout for up).

    ``session``: in a session (and process group) of its own, as a shell runs a command.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopline", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        start_new_session=session,
    )
    stream = proc.stdout if argv[0] == "up" else proc.stderr
    assert stream is not None
    marker = {"up": "Ctrl-C stops everything.", "gateway": "listening on"}.get(
        argv[0], "hopline processor ready"
    )
    deadline = time.monotonic() + 90
    seen = ""
    while marker not in seen:
        line = stream.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{argv[0]} did not start:\n{seen}{proc.communicate()[1]}")
        seen += line
    return proc


Popen = subprocess.Popen[str]


def stop(proc: Popen, sig: signal.Signals = signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.parametrize(
    "command", ["up", "gateway", "processor", "gateway --workers 2", "up --workers 2"]
)
def test_ctrl_c_exits_130_and_sigterm_0(command: str, rabbitmq_url: str) -> None:
    """Row 6 (and 8): Ctrl-C is 130 and says so in one line, SIGTERM 0 and silent; neither
    prints a library log line."""
    queue = f"test-unhappy-{uuid.uuid4().hex[:8]}"
    argv = (*command.split(), "--input-queue", queue)
    if argv[0] != "processor":
        argv += ("--port", "0")
    try:
        code, err = stop(start(*argv), signal.SIGINT)
        assert (code, err) == (130, "hopline: interrupted\n")
        code, err = stop(start(*argv), signal.SIGTERM)
        assert (code, err) == (0, "")
    finally:
        asyncio.run(delete_queues(rabbitmq_url, QueueTopology(input_queue=queue)))


@pytest.mark.parametrize("command", ["up", "up --workers 2", "gateway --workers 2"])
def test_ctrl_c_at_a_terminal_says_interrupted_once(command: str, rabbitmq_url: str) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group: the command still
    exits 130 with one 'hopline: interrupted', not one more per processor or worker."""
    queue = f"test-unhappy-{uuid.uuid4().hex[:8]}"
    argv = (*command.split(), "--input-queue", queue, "--port", "0")
    try:
        proc = start(*argv, session=True)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (130, "hopline: interrupted\n")
    finally:
        asyncio.run(delete_queues(rabbitmq_url, QueueTopology(input_queue=queue)))


def test_processor_prints_a_ready_line_and_finds_handlers_in_the_current_directory(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    """Row 9: ``hopline processor --handler good:reverse`` next to good.py works, and says so."""
    (tmp_path / "good.py").write_text("def reverse(s):\n    return s[::-1]\n")
    queue = f"test-unhappy-{uuid.uuid4().hex[:8]}"
    proc = start("processor", "--handler", "good:reverse", "--input-queue", queue, cwd=tmp_path)
    try:
        gateway = start("gateway", "--port", str(port := free_port()), "--input-queue", queue)
        try:
            code, out, err, _ = run_hopline("send", "--url", f"ws://127.0.0.1:{port}/ws", "hello")
            assert (code, out) == (0, "olleh\n"), err
        finally:
            stop(gateway, signal.SIGTERM)
    finally:
        code, err = stop(proc, signal.SIGTERM)
        asyncio.run(delete_queues(rabbitmq_url, QueueTopology(input_queue=queue)))
    assert code == 0, err


def test_up_keeps_the_broker_password_off_the_command_line(rabbitmq_url: str) -> None:
    """Also seen: ``ps`` shows every user the processors' command lines: no password there."""
    password = URL(rabbitmq_url).password
    assert password
    queue = f"test-unhappy-{uuid.uuid4().hex[:8]}"
    proc = start("up", "--port", "0", "--processors", "1", "--input-queue", queue)
    try:
        children = children_of(proc.pid)
        assert children
        for child in children:
            argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
            assert b"processor" in argv
            assert not any(password.encode() in arg for arg in argv)
    finally:
        stop(proc, signal.SIGTERM)
        asyncio.run(delete_queues(rabbitmq_url, QueueTopology(input_queue=queue)))


@pytest.mark.parametrize(
    ("when", "signals", "code"),
    [
        ("starting", [signal.SIGINT, signal.SIGINT], 130),
        ("running", [signal.SIGINT, signal.SIGINT], 130),
        ("starting", [signal.SIGTERM], 0),
    ],
    ids=["ctrl-c-twice-starting", "ctrl-c-twice-running", "sigterm-starting"],
)
def test_up_never_leaves_the_private_broker_behind(
    when: str, signals: list[signal.Signals], code: int
) -> None:
    """Row 3: Ctrl-C twice (while the node starts, or once up) or SIGTERM while it
    starts: no node process, no data directory left."""
    tmp = Path(tempfile.mkdtemp(prefix="hopline-test-", dir="/tmp"))
    tmp.chmod(0o755)  # the node runs as the rabbitmq user
    argv = [sys.executable, "-m", "hopline", "up", "--port", "0", "--processors", "1"]
    env = {**os.environ, "TMPDIR": str(tmp), "RABBITMQ_URL": f"amqp://g:g@127.0.0.1:{free_port()}/"}
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        if when == "starting":
            deadline = time.monotonic() + 30
            while not any(tmp.glob("hopline-rabbit-*/mnesia")) or not node_processes(tmp):
                assert time.monotonic() < deadline, "the private node never started"
                time.sleep(0.05)
        else:
            output = ""
            while "Ctrl-C stops everything." not in output:
                line = proc.stdout.readline()
                assert line, f"up exited early: {proc.communicate()[1]}"
                output += line
            assert "private node" in output
        for number, sig in enumerate(signals):
            if number:
                time.sleep(0.2)  # the second Ctrl-C of an impatient user, during the stop
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert err.count("hopline: interrupted") == (1 if code == 130 else 0), err
        assert not any(tmp.glob("hopline-rabbit-*")), "the node's data directory was left"
        assert not node_processes(tmp), "the node was left running"
    finally:
        for pid in node_processes(tmp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
