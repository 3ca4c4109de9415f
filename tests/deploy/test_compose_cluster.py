"""compose.cluster.yaml checked against the real CLI, without a Docker engine.

Three RabbitMQ nodes (official image) sharing one Erlang cookie and finding each
other by host name, pause_minority, a quorum input queue, and every hopline service
given all three broker addresses, which the real option parser accepts.
"""

from __future__ import annotations

from typing import Any

import pytest

from hopline.wire.connect import parse_amqp_urls
from tests.deploy.spec import (
    ROOT,
    check_service_cli,
    load_compose,
    parse_command,
    service_environment,
)

COMPOSE = load_compose(ROOT / "compose.cluster.yaml")
SERVICES: dict[str, Any] = COMPOSE["services"]
NODES = ["rabbit1", "rabbit2", "rabbit3"]
HOPLINE_SERVICES = ["gateway-a", "gateway-b", "processor"]


def test_three_nodes_two_gateways_processors_and_no_version_key() -> None:
    assert "version" not in COMPOSE
    assert set(SERVICES) == {*NODES, *HOPLINE_SERVICES}


@pytest.mark.parametrize("name", NODES)
def test_each_node_is_the_official_image_with_the_shared_cookie_and_cluster_config(
    name: str,
) -> None:
    node = SERVICES[name]
    assert node["image"].startswith("rabbitmq:") and node["hostname"] == name
    targets = {c["source"]: c for c in node["configs"]}
    cookie = targets["erlang-cookie"]
    assert cookie["target"] == "/var/lib/rabbitmq/.erlang.cookie"
    assert cookie["mode"] == 0o400 and cookie["uid"] == "999"
    assert targets["rabbitmq-cluster-conf"]["target"].startswith("/etc/rabbitmq/conf.d/")
    volume, _, target = node["volumes"][0].partition(":")
    assert target == "/var/lib/rabbitmq" and volume in COMPOSE["volumes"]
    assert node["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]


def test_peer_discovery_names_every_node_and_partitions_pause_the_minority() -> None:
    conf = dict(
        line.split(" = ", 1)
        for line in COMPOSE["configs"]["rabbitmq-cluster-conf"]["content"].splitlines()
        if " = " in line
    )
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes")}
    assert listed == {f"rabbit@{n}" for n in NODES}
    assert conf["cluster_partition_handling"] == "pause_minority"


@pytest.mark.parametrize("name", HOPLINE_SERVICES)
def test_service_parses_with_the_real_cli(name: str) -> None:
    """Every option and variable of the service exists and parses (all three addresses)."""
    check_service_cli(name, SERVICES[name])


@pytest.mark.parametrize("name", HOPLINE_SERVICES)
def test_every_service_gets_all_three_addresses_and_a_quorum_queue(name: str) -> None:
    service = SERVICES[name]
    env = service_environment(service, {})
    hosts = [u.split("@", 1)[1].split(":", 1)[0] for u in parse_amqp_urls(env["RABBITMQ_URL"])]
    assert hosts == NODES
    ctx = parse_command(list(service["command"]), env)
    assert ctx.params["rabbitmq_url"].count("amqp://") == 3
    assert ctx.params["queue_type"] == "quorum"
    assert set(service["depends_on"]) == set(NODES)


@pytest.mark.parametrize("name", ["gateway-a", "gateway-b"])
def test_gateways_ask_every_nodes_management_api(name: str) -> None:
    env = service_environment(SERVICES[name], {})
    assert [u.split("//")[1].split(":")[0] for u in env["HOPLINE_MANAGEMENT_URL"].split(",")] == (
        NODES
    )


def test_a_malformed_address_in_the_list_would_be_caught() -> None:
    env = service_environment(SERVICES["processor"], {"RABBITMQ_USER": "u"})
    env["RABBITMQ_URL"] += ",rabbit4:5672"
    with pytest.raises(Exception, match="not an AMQP URL"):
        parse_command(list(SERVICES["processor"]["command"]), env)
