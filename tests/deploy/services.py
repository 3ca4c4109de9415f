"""Run compose.yaml's services outside a container: same entrypoint, command and environment.

The only translation is the network: the broker URL becomes the test broker, the
gateway's port a free local one (``gateway:8000`` in other services' URLs follows it),
and the input queue a unique one so the run never meets another stack's traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopline.broker_node import port_answers
from tests.deploy.spec import ROOT, dockerfile_instructions, is_cli_variable, load_compose
from tests.deploy.spec import service_environment as compose_environment
from tests.helpers import eventually

__all__ = ["LocalCompose", "free_port"]

SERVICES: dict[str, Any] = load_compose()["services"]
DOCKERFILE = dockerfile_instructions((ROOT / "Dockerfile").read_text())


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT, resolved to this virtualenv's console script."""
    entry = next(i for i in reversed(DOCKERFILE) if i.keyword == "ENTRYPOINT").exec_form()
    assert entry, "ENTRYPOINT must use the exec form"
    return [str(Path(sys.executable).parent / entry[0]), *entry[1:]]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalCompose:
    """Services of compose.yaml started as local processes by one test."""

    rabbitmq_url: str
    input_queue: str
    logs: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, list[asyncio.subprocess.Process]] = field(default_factory=dict)

    def environment(self, name: str) -> dict[str, str]:
        """The service's environment (defaults interpolated) with local addresses."""
        env = compose_environment(SERVICES[name], {})
        local = {
            "RABBITMQ_URL": self.rabbitmq_url,
            "HOPLINE_INPUT_QUEUE": self.input_queue,
            "HOPLINE_PORT": str(self.port),
        }
        if "HOPLINE_MANAGEMENT_URL" in env:
            # The local broker's management plugin if it runs, else none (the CLI default).
            answers = port_answers("127.0.0.1", 15672, timeout=1.0)
            local["HOPLINE_MANAGEMENT_URL"] = "http://127.0.0.1:15672" if answers else ""
        env.update({key: value for key, value in local.items() if key in env})
        for key, value in env.items():
            env[key] = value.replace("//gateway:8000/", f"//127.0.0.1:{self.port}/")
            assert not re.search(r"[/@](rabbitmq|gateway):", env[key]), (key, value)
        return env

    def process_environment(self, name: str) -> dict[str, str]:
        """This process's environment minus hopline's variables, plus the service's."""
        base = {key: value for key, value in os.environ.items() if not is_cli_variable(key)}
        return base | self.environment(name)

    def log(self, name: str) -> str:
        """Everything the service's processes wrote to stdout and stderr so far."""
        path = self.logs / f"{name}.log"
        return path.read_text() if path.exists() else ""

    async def start(self, name: str) -> asyncio.subprocess.Process:
        """Start one process of the service: ENTRYPOINT + command, with its environment."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *entrypoint(),
                *SERVICES[name]["command"],
                env=self.process_environment(name),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.processes.setdefault(name, []).append(process)
        return process

    async def stop(self, process: asyncio.subprocess.Process, timeout: float) -> int:
        """SIGTERM (the image's STOPSIGNAL), then the exit code; fails after ``timeout`` s."""
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await process.wait()
        except TimeoutError:
            raise AssertionError(f"no exit within {timeout} s of SIGTERM") from None

    async def healthcheck(self, name: str) -> int:
        """Run the service's compose healthcheck command here; its exit code."""
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        argv = [sys.executable if test[1] == "python" else test[1], *test[2:]]
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=self.process_environment(name),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(10):
                return await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until the gateway's compose healthcheck passes (so the broker is connected too)."""

        async def healthy() -> bool:
            return await self.healthcheck("gateway") == 0

        await eventually(
            healthy, timeout=timeout, interval=0.2, message="gateway healthcheck passes"
        )

    async def close(self) -> None:
        """Kill whatever a test left running."""
        for processes in self.processes.values():
            for process in processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
