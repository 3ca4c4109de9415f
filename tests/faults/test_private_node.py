"""The private node the fault tests (and ``hopline up``) start: its ports.

A node binds its ports seconds after they were picked. A port from the kernel's
ephemeral range can meanwhile become the local port of any outgoing connection on the
machine, and the node then fails to start (``dist_port_already_used``, seen in a test
run on a busy machine): its ports come from outside that range, and the distribution
port, which nobody connects to by number, is picked anew on every start.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from hopline.broker_node import EPHEMERAL_RANGE_FILE, PrivateBroker, amqp_answers, node_port


def ephemeral_range() -> range:
    low, high = (int(n) for n in Path(EPHEMERAL_RANGE_FILE).read_text().split())
    return range(low, high + 1)


def test_node_ports_are_outside_the_ephemeral_range_and_free() -> None:
    """node_port() never returns a port an outgoing connection could be given."""
    ephemeral = ephemeral_range()
    for _ in range(200):
        port = node_port()
        assert port not in ephemeral
        with socket.socket() as sock:
            sock.bind(("", port))  # nothing holds it


async def test_a_restart_does_not_need_the_last_distribution_port(
    private_broker: PrivateBroker,
) -> None:
    """An outgoing connection holding the node's last distribution port: it restarts anyway."""
    assert private_broker.port not in ephemeral_range()  # clients reconnect to it: kept
    await asyncio.to_thread(private_broker.stop)
    last = private_broker.dist_port
    # What the kernel does with an ephemeral port: a client socket bound to it, connected.
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
        client.bind(("127.0.0.1", last))
        client.connect(server.getsockname())
        await asyncio.to_thread(private_broker.start)
    assert private_broker.dist_port != last
    assert amqp_answers("127.0.0.1", private_broker.port)
