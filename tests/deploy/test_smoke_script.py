""".ci/smoke fails loudly: non-zero and one 'smoke: FAILED:' line when the stack cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.deploy.services import free_port
from tests.deploy.spec import ROOT


def test_smoke_fails_with_one_line_when_the_broker_is_unreachable() -> None:
    """No broker at RABBITMQ_URL: exit 1, last stderr line names the cause, nothing left running."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["RABBITMQ_URL"] = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    result = subprocess.run(
        [str(ROOT / ".ci" / "smoke")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("smoke: FAILED: hopline up exited: ") and "RabbitMQ" in last, last
    queue = next(word for word in result.stdout.split() if word.startswith("smoke-"))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert queue not in ps.stdout, "a process started by .ci/smoke outlived it"
