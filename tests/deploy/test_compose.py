"""compose.yaml checked against the real CLI and gateway routes, without a Docker engine."""

from __future__ import annotations

from typing import Any

import click
import pytest

from hopline.cli import main
from processor.handlers import load_handler
from tests.deploy.spec import (
    check_service_cli,
    interpolate,
    load_compose,
    parse_command,
    service_environment,
    variables,
)

COMPOSE = load_compose()
SERVICES: dict[str, Any] = COMPOSE["services"]
HOPLINE_SERVICES = ["gateway", "processor", "loadtest"]
NO_ENV: dict[str, str] = {}  # a plain `docker compose up`: every variable takes its default


def test_compose_spec_file_has_the_four_services_and_no_version_key() -> None:
    """compose.yaml is a Compose-specification file: no version key, the four services."""
    assert "version" not in COMPOSE
    assert set(SERVICES) == {"rabbitmq", "gateway", "processor", "loadtest"}


def test_interpolation_follows_compose_rules() -> None:
    """The test's interpolation matches Compose: defaults, empty values, $$ escapes."""
    assert interpolate("${A:-x}/${B-y}/$$C/$A", {"A": "", "B": ""}) == "x//$C/"
    assert interpolate("${A:-x}", {"A": "set"}) == "set"
    with pytest.raises(ValueError, match="A is missing"):
        interpolate("${A:?A is missing}", {})


@pytest.mark.parametrize("name", HOPLINE_SERVICES)
def test_service_command_and_environment_parse_with_the_real_cli(name: str) -> None:
    """Every option and HOPLINE_*/RABBITMQ_URL variable of the service exists and parses."""
    check_service_cli(name, SERVICES[name])


@pytest.mark.parametrize("name", HOPLINE_SERVICES)
def test_overridable_variables_keep_the_cli_names(name: str) -> None:
    """`HOPLINE_X: ${...}` reads the host's HOPLINE_X: one variable table for CLI and Compose."""
    for key, value in (SERVICES[name].get("environment") or {}).items():
        if key.startswith("HOPLINE_"):
            assert set(variables(str(value))) <= {key}, f"{name}: {key}={value}"


def test_overrides_from_the_host_reach_the_cli() -> None:
    """A value set in the host environment (or .env) is the one the processor parses."""
    env = service_environment(SERVICES["processor"], {"HOPLINE_HANDLER": "upper"})
    ctx = parse_command(list(SERVICES["processor"]["command"]), env)
    assert ctx.params["handler"] == "upper"


def test_a_wrong_value_in_compose_would_be_caught() -> None:
    """The parse check fails for a value the CLI rejects (so the test above can fail)."""
    env = service_environment(SERVICES["gateway"], {"HOPLINE_BATCHING": "sometimes"})
    with pytest.raises(click.BadParameter):
        parse_command(list(SERVICES["gateway"]["command"]), env)


def test_rabbitmq_service_has_management_healthcheck_credentials_and_volume() -> None:
    """Official management image, UI on 15672, diagnostics ping, env credentials, named volume."""
    rabbit = SERVICES["rabbitmq"]
    image = rabbit["image"]
    assert image.startswith("rabbitmq:") and image.endswith("-management")
    assert any(str(port).endswith(":15672") for port in rabbit["ports"])
    assert rabbit["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    env = rabbit["environment"]
    assert variables(env["RABBITMQ_DEFAULT_USER"]) == ["RABBITMQ_USER"]
    assert variables(env["RABBITMQ_DEFAULT_PASS"]) == ["RABBITMQ_PASSWORD"]
    volume, _, target = rabbit["volumes"][0].partition(":")
    assert target == "/var/lib/rabbitmq" and volume in COMPOSE["volumes"]
    assert rabbit.get("hostname"), "a fixed hostname keeps the node name, hence its data dir"


@pytest.mark.parametrize("name", ["gateway", "processor"])
def test_services_use_the_brokers_credentials(name: str) -> None:
    """RABBITMQ_URL carries the same user and password the broker is created with."""
    for env in (NO_ENV, {"RABBITMQ_USER": "alice", "RABBITMQ_PASSWORD": "s3cret"}):
        user = interpolate(SERVICES["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"], env)
        password = interpolate(SERVICES["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"], env)
        url = service_environment(SERVICES[name], env)["RABBITMQ_URL"]
        assert url == f"amqp://{user}:{password}@rabbitmq:5672/"


@pytest.mark.parametrize("name", ["gateway", "processor"])
def test_services_wait_for_a_healthy_broker(name: str) -> None:
    """The gateway and processors start once the broker's healthcheck passes."""
    assert SERVICES[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_down_stops_the_gateway_before_the_processors_and_the_broker_last() -> None:
    """Compose stops dependents first: gateway drains while processors still reply."""
    assert "processor" in SERVICES["gateway"]["depends_on"]
    assert "gateway" not in SERVICES["processor"].get("depends_on", {})


def test_gateway_publishes_port_8000_and_checks_health_on_its_own_port() -> None:
    """Port 8000 is published and the healthcheck fetches /health on HOPLINE_PORT."""
    gateway = SERVICES["gateway"]
    env = service_environment(gateway, NO_ENV)
    assert env["HOPLINE_PORT"] == "8000"
    assert any(interpolate(str(port), NO_ENV) == "8000:8000" for port in gateway["ports"])
    check = gateway["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "'/health'" in check[3] and "HOPLINE_PORT" in check[3]


def test_processor_runs_several_replicas_with_a_configurable_handler() -> None:
    """deploy.replicas >= 2, and the default HOPLINE_HANDLER loads."""
    processor = SERVICES["processor"]
    assert processor["deploy"]["replicas"] >= 2
    assert "container_name" not in processor, "a fixed name prevents --scale"
    assert variables(processor["environment"]["HOPLINE_HANDLER"]) == ["HOPLINE_HANDLER"]
    load_handler(service_environment(processor, NO_ENV)["HOPLINE_HANDLER"])


@pytest.mark.parametrize("name", HOPLINE_SERVICES)
def test_hopline_services_share_one_image_and_drain_before_sigkill(name: str) -> None:
    """One image for all three; the stop grace period exceeds the drain timeout."""
    service = SERVICES[name]
    assert service["build"] == "." and service["image"] == SERVICES["gateway"]["image"]
    grace = str(service["stop_grace_period"])
    assert grace.endswith("s") and float(grace[:-1]) > float(
        service_environment(SERVICES["gateway"], NO_ENV)["HOPLINE_DRAIN_TIMEOUT"]
    )


def test_every_cli_command_in_compose_is_a_hopline_command() -> None:
    """The services' first words are subcommands the group lists."""
    ctx = main.make_context("hopline", ["gateway"])
    commands = main.list_commands(ctx)
    for name in HOPLINE_SERVICES:
        assert SERVICES[name]["command"][0] in commands


@pytest.mark.parametrize("name", HOPLINE_SERVICES)
def test_hopline_services_run_read_only_without_capabilities(name: str) -> None:
    """Read-only root filesystem, no capabilities, no privilege escalation."""
    service = SERVICES[name]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
