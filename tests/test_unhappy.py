"""Every failure a user can cause ends within seconds in one line on stderr, with its exit code.

The commands run as a user runs them (a subprocess, the real broker); each case checks
the exit code, that stderr is exactly one line (``hopline: error: ...``, no traceback,
no library log line) and how long it took. A test walks the command list so that a new
subcommand without a case here fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import click
import pytest
from yarl import URL

from hopline.broker_node import free_port
from hopline.cli import main
from hopline.wire.amqp import QueueTopology
from tests.conftest import delete_queues
from tests.helpers import children_of, node_processes

SECONDS = 10.0  # "within seconds": the slowest case waits 3 s for an AMQP handshake
REDACTED = r"amqp://guest:\*\*\*@"


@dataclass(frozen=True)
class Case:
    """One command a user gets wrong, and the one line it must answer with."""

    argv: tuple[str, ...]
    code: int
    line: str  # a regular expression the whole stderr line must match
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Places:
    """Addresses the cases point at."""

    broker: str  # host:port of the test broker
    dead: int  # a local port nothing listens on
    silent: int  # a local port that accepts connections and never answers (not AMQP)


def cases(p: Places) -> dict[str, Case]:
    dead_url = f"amqp://guest:guest@127.0.0.1:{p.dead}/"
    silent_url = f"amqp://guest:guest@127.0.0.1:{p.silent}/"
    refused = rf"hopline: error: cannot reach RabbitMQ at {REDACTED}127\.0\.0\.1:\d+/: "
    not_amqp = (
        refused + r"port \d+ accepts connections but did not answer the AMQP handshake "
        r"within 3 s \(is it RabbitMQ's AMQP port\?\)"
    )
    taken = (
        r"hopline: error: cannot listen on 127\.0\.0\.1:\d+: Address already in use; "
        r"pick another with --port"
    )
    garbage = (
        r"hopline: error: Invalid value for '--rabbitmq-url' \(env var: 'RABBITMQ_URL'\): "
        r"not an AMQP URL: 'garbage' \(scheme must be amqp or amqps; .*\) \(see '.+ --help'\)"
    )
    no_handler = (
        r"hopline: error: Invalid value for --handler: cannot import handler module "
        r"'nosuchmodule': No module named 'nosuchmodule' \(see '.+ --help'\)"
    )
    q = ("--input-queue", "test-unhappy-never-declared")
    one = ("--procs", "1", "--connections", "1")
    return {
        # gateway (rows 2, 4, 8; a port in use)
        "gateway-refused": Case(
            ("gateway", "--port", "0", "--rabbitmq-url", dead_url),
            3,
            refused + "connection refused",
        ),
        "gateway-not-amqp": Case(
            ("gateway", "--port", "0", "--rabbitmq-url", silent_url), 3, not_amqp
        ),
        "gateway-garbage-url": Case(("gateway", "--rabbitmq-url", "garbage"), 2, garbage),
        "gateway-port-taken": Case(
            ("gateway", "--host", "127.0.0.1", "--port", str(p.silent), *q), 3, taken
        ),
        "gateway-bad-login": Case(
            ("gateway", "--port", "0", "--rabbitmq-url", f"amqp://guest:wrong@{p.broker}/"),
            3,
            rf"hopline: error: cannot reach RabbitMQ at {REDACTED}.*ACCESS_REFUSED.*",
        ),
        "gateway-bad-option": Case(
            ("gateway", "--port", "x"),
            2,
            r"hopline: error: Invalid value for '--port'.*'x' is not a valid integer.*"
            r" \(see '.+ gateway --help'\)",
        ),
        # processor (rows 2, 8)
        "processor-refused": Case(
            ("processor", "--rabbitmq-url", dead_url), 3, refused + "connection refused"
        ),
        "processor-not-amqp": Case(("processor", "--rabbitmq-url", silent_url), 3, not_amqp),
        "processor-no-handler": Case(("processor", "--handler", "nosuchmodule:fn"), 2, no_handler),
        # up (rows 1, 2, 4, 10; a port in use)
        "up-no-handler": Case(("up", "--handler", "nosuchmodule:fn"), 2, no_handler),
        "up-not-amqp": Case(("up", "--port", "0", "--rabbitmq-url", silent_url), 3, not_amqp),
        "up-garbage-url": Case(("up", "--rabbitmq-url", "garbage"), 2, garbage),
        "up-unresolvable-host": Case(
            ("up", "--port", "0", "--rabbitmq-url", "amqp://guest:guest@nosuchhost.invalid:5672/"),
            3,
            rf"hopline: error: cannot reach RabbitMQ at {REDACTED}nosuchhost\.invalid:5672/: "
            r"cannot resolve host 'nosuchhost\.invalid': .+",
        ),
        "up-remote-host": Case(
            ("up", "--port", "0", "--rabbitmq-url", "amqp://guest:guest@192.0.2.1:5672/"),
            3,
            rf"hopline: error: cannot reach RabbitMQ at {REDACTED}192\.0\.2\.1:5672/: .+",
        ),
        "up-port-taken": Case(("up", "--host", "127.0.0.1", "--port", str(p.silent), *q), 3, taken),
        "up-no-private-broker": Case(
            ("up", "--port", "0", "--no-private-broker", "--rabbitmq-url", dead_url),
            3,
            rf"hopline: error: no RabbitMQ answers at {REDACTED}127\.0\.0\.1:\d+/; install "
            r"RabbitMQ \(e\.g\. 'apt-get install rabbitmq-server'\) or start one with "
            r"'docker compose up -d rabbitmq', then set RABBITMQ_URL",
        ),
        # the other commands
        "send-no-message": Case(
            ("send",),
            2,
            r"hopline: error: Missing argument 'MESSAGES\.\.\.'\. \(see '.+ send --help'\)",
        ),
        "send-nothing-listens": Case(
            ("send", "--url", f"ws://127.0.0.1:{p.dead}/ws", "hi"),
            3,
            r"hopline: error: cannot connect to ws://127\.0\.0\.1:\d+/ws: connection refused",
        ),
        "token-short-secret": Case(
            ("token", "--token-secret", "short"),
            2,
            r"hopline: error: Invalid value for '--token-secret'.*at least 32 bytes.*",
        ),
        "tui-unknown-option": Case(
            ("tui", "--nosuch"), 2, r"hopline: error: No such option '--nosuch'\. .*"
        ),
        "loadtest-nothing-listens": Case(
            ("loadtest", "-q", "--url", f"ws://127.0.0.1:{p.dead}/ws", "--duration", "1s", *one),
            4,
            r"hopline: error: no connection could be made to ws://127\.0\.0\.1:\d+/ws "
            r"\(connection refused: 1\)",
        ),
        "unknown-command": Case(
            ("nosuchcommand",), 2, r"hopline: error: No such command 'nosuchcommand'\. .*"
        ),
    }


@pytest.fixture(scope="module")
def places(rabbitmq_url: str) -> Iterator[Places]:
    """A dead port and a silent one (listening, never accepting: the kernel completes
    the handshake, nothing ever answers), for the whole module."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        parsed = URL(rabbitmq_url)
        yield Places(f"{parsed.host}:{parsed.port or 5672}", free_port(), silent.getsockname()[1])


def run_hopline(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> tuple[int, str, str, float]:
    """``python -m hopline ARGV`` as a user runs it: exit code, stdout, stderr, seconds."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hopline", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def assert_one_line(err: str, pattern: str) -> None:
    """stderr is exactly one line, matching ``pattern`` as a whole."""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert re.fullmatch(pattern, lines[0]), f"{lines[0]!r} does not match {pattern!r}"


CASE_NAMES = sorted(cases(Places("h:1", 1, 2)))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_a_mistake_ends_in_one_line(name: str, places: Places) -> None:
    """Exit code, one stderr line (no traceback, no library log line), within seconds."""
    case = cases(places)[name]
    code, _, err, seconds = run_hopline(*case.argv, env=case.env)
    assert code == case.code, err
    assert_one_line(err, case.line)
    assert seconds < SECONDS


def test_every_command_has_a_case() -> None:
    """Walks the commands: each one has at least one case above."""
    ctx = click.Context(main)
    covered = {cases(Places("h:1", 1, 2))[name].argv[0] for name in CASE_NAMES}
    assert set(main.list_commands(ctx)) <= covered


def test_a_port_that_speaks_first_is_named_not_amqp() -> None:
    """A service that greets and hangs up (an SSH banner) is told apart from a silent one,
    with the line docs/troubleshooting.md lists."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]

        def greet() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    with conn:
                        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        threading.Thread(target=greet, daemon=True).start()
        url = f"amqp://guest:guest@127.0.0.1:{port}/"
        code, _, err, seconds = run_hopline("processor", "--rabbitmq-url", url)
    assert code == 3, err
    assert_one_line(
        err,
        rf"hopline: error: cannot reach RabbitMQ at {REDACTED}127\.0\.0\.1:{port}/: "
        rf"port {port} answers but not as an AMQP broker \(is it RabbitMQ's AMQP port\?\)",
    )
    assert seconds < SECONDS


# The rows of issue 14 that need more than one command line.


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


def queue_exists(rabbitmq_url: str, name: str) -> bool:
    async def check() -> bool:
        conn = await aio_pika.connect(rabbitmq_url)
        async with conn:
            channel = await conn.channel()
            try:
                await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            return True

    return asyncio.run(check())


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


def test_up_checks_the_handler_before_starting_anything(tmp_path: Path) -> None:
    """Row 1: a handler module that raises on import is a usage error, nothing started."""
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    code, out, err, seconds = run_hopline("up", "--handler", "broken:fn", cwd=tmp_path)
    assert (code, out) == (2, "")
    assert_one_line(
        err,
        r"hopline: error: Invalid value for --handler: cannot import handler module 'broken': "
        r"boom \(see '.+ up --help'\)",
    )
    assert seconds < SECONDS


def test_up_fails_when_a_processor_dies_during_start_up(tmp_path: Path, rabbitmq_url: str) -> None:
    """Row 1: a child that exits before it consumes fails up with exit 3, never "up"."""
    (tmp_path / "childonly.py").write_text(
        "import sys\n"
        "if 'processor' in sys.argv:\n"
        "    raise SystemExit('hopline: error: this handler cannot run here')\n"
        "def fn(s):\n    return s\n"
    )
    queue = f"test-unhappy-{uuid.uuid4().hex[:8]}"
    try:
        code, out, err, seconds = run_hopline(
            "up", "--port", "0", "--handler", "childonly:fn", "--input-queue", queue, cwd=tmp_path
        )
    finally:
        asyncio.run(delete_queues(rabbitmq_url, QueueTopology(input_queue=queue)))
    assert (code, out) == (3, "")
    assert_one_line(
        err,
        r"hopline: error: processor [12] exited with code 1 during start-up: "
        r"this handler cannot run here",
    )
    assert seconds < SECONDS


def test_a_port_in_use_declares_nothing(rabbitmq_url: str, places: Places) -> None:
    """Also seen: a taken port leaves no queue behind (and the line suggests --port)."""
    queue = f"test-unhappy-{uuid.uuid4().hex[:8]}"
    for command in ("gateway", "up"):
        code, _, err, _ = run_hopline(
            command, "--host", "127.0.0.1", "--port", str(places.silent), "--input-queue", queue
        )
        assert code == 3, err
        assert "pick another with --port" in err
    assert not queue_exists(rabbitmq_url, queue)


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


def test_a_private_node_that_cannot_start_is_one_line_with_its_reason() -> None:
    """up: the node's own reason, not a path into the data directory up has just removed."""
    tmp = Path(tempfile.mkdtemp(prefix="hopline-test-", dir="/tmp"))
    tmp.chmod(0o700)  # the node runs as the rabbitmq user: it cannot write its data here
    try:
        dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
        code, out, err, _ = run_hopline(
            "up", "--port", "0", env={"RABBITMQ_URL": dead, "TMPDIR": str(tmp)}
        )
        assert (code, out) == (3, "")
        notice, error = err.splitlines()
        assert notice.endswith("does not answer; starting a private node...")
        assert re.fullmatch(
            r"hopline: error: could not start a private RabbitMQ node: rabbitmq-server exited "
            r"with \d+: .+",
            error,
        ), error
        assert not list(tmp.glob("hopline-rabbit-*"))
        assert not node_processes(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
