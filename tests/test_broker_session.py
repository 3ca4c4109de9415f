"""``pytest`` on a machine whose broker is not running (tests/broker_session.py).

Each case runs pytest in a subprocess on a tiny test file, with RABBITMQ_URL at a dead
port (the machine's broker is never stopped for this).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.broker_node import free_port
from tests.helpers import node_processes

ROOT = Path(__file__).resolve().parent.parent

TINY_TEST = """
import os
from yarl import URL
from hopline.broker_node import amqp_answers

def test_the_session_broker_answers():
    url = URL(os.environ["RABBITMQ_URL"])
    assert url.port != {dead}
    assert amqp_answers(url.host, url.port)
    print("SESSION_URL", url)
"""

PYTEST_ARGS = ("-p", "no:cacheprovider")

NO_SERVER = """
import tests.broker_session
tests.broker_session.rabbitmq_server_path = lambda: None
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the rabbitmq user can enter (the node's data goes there via TMPDIR)."""
    path = Path(tempfile.mkdtemp(prefix="hopline-session-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for pid in node_processes(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def run_pytest(workdir: Path, dead: int, conftest: str = "") -> subprocess.CompletedProcess[str]:
    (workdir / "test_tiny.py").write_text(TINY_TEST.format(dead=dead))
    (workdir / "conftest.py").write_text(conftest)
    env = {
        **os.environ,
        "RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{dead}/",
        "TMPDIR": str(workdir),
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "pytest", "-p", "tests.broker_session", "-s", "-q"]
    argv += [*PYTEST_ARGS, "--rootdir", str(workdir), str(workdir / "test_tiny.py")]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=120,
    )


def test_without_a_broker_the_session_starts_a_private_node_and_removes_it(
    workdir: Path,
) -> None:
    dead = free_port()
    done = run_pytest(workdir, dead)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the tests use a private node at amqp://guest:guest@127.0.0.1:" in done.stdout
    assert "SESSION_URL amqp://guest:guest@127.0.0.1:" in done.stdout
    assert not list(workdir.glob("hopline-rabbit-*")), "the node's data directory was left"
    assert not node_processes(workdir), "the node was left running"


def test_without_a_broker_or_rabbitmq_server_one_line_says_how_to_get_one(
    workdir: Path,
) -> None:
    done = run_pytest(workdir, free_port(), conftest=NO_SERVER)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"ERROR: no RabbitMQ answers at amqp://guest:\*\*\*@127\.0\.0\.1:\d+/ and "
        r"rabbitmq-server is not installed: install it \('apt-get install rabbitmq-server'; .*",
        lines[0],
    ), lines[0]
