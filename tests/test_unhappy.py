"""Every failure a user can cause ends within seconds in one line on stderr, with its exit code.

The commands run as a user runs them (a subprocess, the real broker); each case checks
the exit code, that stderr is exactly one line (``hopline: error: ...``, no traceback,
no library log line) and how long it took. A test walks the command list so that a new
subcommand without a case here fails. How a running command stops (Ctrl-C, SIGTERM,
nothing left behind) is ``test_stopping.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
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
from tests.helpers import node_processes

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
        "processor-missing-vhost": Case(
            ("processor", "--rabbitmq-url", f"amqp://guest:guest@{p.broker}/no-such-vhost"),
            3,
            rf"hopline: error: cannot reach RabbitMQ at {REDACTED}.*/no-such-vhost: the broker "
            r"refused virtual host 'no-such-vhost' \(it does not exist, or this user has no "
            r"permissions on it; see rabbitmqctl list_vhosts, list_permissions\)",
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
