"""compose.yaml's gateway and processor commands start, serve and drain against the local broker.

No Docker engine here: each service runs as a local process with the image's
ENTRYPOINT, the service's command and its environment (addresses made local).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
from websockets.asyncio.client import connect

from tests.deploy.services import SERVICES, LocalCompose, free_port
from tests.helpers import eventually, http_get

STOP_TIMEOUT = 10.0  # "promptly": well inside compose's stop_grace_period


async def test_gateway_and_processor_serve_hello_and_exit_0_on_sigterm(
    local_compose: LocalCompose,
) -> None:
    """Both commands start, the healthcheck passes, hello -> hello world, SIGTERM exits 0."""
    gateway = await local_compose.start("gateway")
    processor = await local_compose.start("processor")
    await local_compose.wait_healthy()
    url = f"ws://127.0.0.1:{local_compose.port}"
    async with asyncio.timeout(15), connect(f"{url}/ws") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello world"
    health = await http_get(f"http://127.0.0.1:{local_compose.port}/health")
    assert health.status == 200 and health.json()["broker"] == "connected"
    assert await local_compose.stop(gateway, STOP_TIMEOUT) == 0, local_compose.log("gateway")
    assert await local_compose.stop(processor, STOP_TIMEOUT) == 0, local_compose.log("processor")
    for name in ("gateway", "processor"):
        assert "Traceback" not in local_compose.log(name), local_compose.log(name)


async def test_gateway_healthcheck_fails_when_nothing_answers(local_compose: LocalCompose) -> None:
    """The healthcheck command exits non-zero when no gateway listens on HOPLINE_PORT."""
    local_compose.port = free_port()
    assert await local_compose.healthcheck("gateway") != 0


async def test_gateway_drains_an_in_flight_request_on_sigterm(local_compose: LocalCompose) -> None:
    """SIGTERM mid-request: unhealthy at once, the reply still arrives, then 1001 and exit 0."""
    gateway = await local_compose.start("gateway")
    await local_compose.wait_healthy()
    health_url = f"http://127.0.0.1:{local_compose.port}/health"
    async with asyncio.timeout(30), connect(f"ws://127.0.0.1:{local_compose.port}/ws") as ws:
        await ws.send("hello")  # no processor yet: the request waits in the input queue

        async def pending() -> bool:
            return (await http_get(health_url)).json()["pending_requests"] == 1

        await eventually(pending, timeout=10, message="the request is pending")
        stopped = asyncio.create_task(local_compose.stop(gateway, STOP_TIMEOUT + 10))

        async def unhealthy() -> bool:
            return await local_compose.healthcheck("gateway") != 0

        await eventually(unhealthy, timeout=10, message="a draining gateway fails its healthcheck")
        assert gateway.returncode is None, "the gateway must wait for its in-flight request"
        await local_compose.start("processor")
        assert await ws.recv() == "hello world"
        async with asyncio.timeout(STOP_TIMEOUT):  # idle now: closes its sockets and exits
            assert await stopped == 0, local_compose.log("gateway")
            await ws.wait_closed()
        assert ws.close_code == 1001  # going away


def test_rabbitmq_healthcheck_command_passes_against_the_local_broker(rabbitmq_url: str) -> None:
    """`rabbitmq-diagnostics -q ping`, the broker's healthcheck, succeeds on a running node."""
    test = SERVICES["rabbitmq"]["healthcheck"]["test"]
    if shutil.which(test[1]) is None:
        pytest.fail(f"{test[1]} is not installed (it comes with rabbitmq-server)", pytrace=False)
    result = subprocess.run(test[1:], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
