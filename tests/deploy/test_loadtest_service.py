"""compose.yaml's loadtest service: its command parses, and it passes against the local stack."""

from __future__ import annotations

import asyncio

from tests.deploy.services import SERVICES, LocalCompose
from tests.deploy.spec import check_service_cli, service_environment


def test_loadtest_runs_the_smoke_scenario_at_the_gateway_service() -> None:
    """The parsed command is a --smoke run with SLOs against ws://gateway:8000/ws."""
    ctx = check_service_cli("loadtest", SERVICES["loadtest"])
    assert ctx.params["smoke"] is True
    assert ctx.params["url"] == "ws://gateway:8000/ws"
    assert [slo.metric for slo in ctx.params["slos"]] == ["errors", "p99"]


def test_loadtest_is_an_opt_in_profile_started_after_a_healthy_gateway() -> None:
    """The service runs only with --profile loadtest, once the gateway's healthcheck passes."""
    loadtest = SERVICES["loadtest"]
    assert loadtest["profiles"] == ["loadtest"]
    assert loadtest["restart"] == "no", "a finished load test must not be restarted"
    assert loadtest["depends_on"]["gateway"]["condition"] == "service_healthy"
    gateway = service_environment(SERVICES["gateway"], {})
    assert service_environment(loadtest, {})["HOPLINE_URL"].endswith(
        f"//gateway:{gateway['HOPLINE_PORT']}/ws"
    )


async def test_loadtest_service_passes_its_slos_against_the_compose_services(
    local_compose: LocalCompose,
) -> None:
    """gateway + processor + loadtest, as compose runs them: the load test exits 0."""
    await local_compose.start("gateway")
    await local_compose.start("processor")
    await local_compose.wait_healthy()
    loadtest = await local_compose.start("loadtest")
    async with asyncio.timeout(60):
        code = await loadtest.wait()
    log = local_compose.log("loadtest")
    assert code == 0, log
    assert "pass errors==0" in log, log
