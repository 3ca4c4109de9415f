"""A real RabbitMQ cluster of three nodes, each in its own network namespace.

Each node runs as the ``rabbitmq`` user under its own host name (``hl<tag>-n<i>``)
with its own data, log, plugins and config files, the cluster's own Erlang cookie
(a private ``HOME``) and an empty ``RABBITMQ_CONF_ENV_FILE`` (the machine's
``/etc/rabbitmq/rabbitmq-env.conf`` would pin the node to 127.0.0.1). Nodes find
each other by host name (``classic_config`` peer discovery), handle partitions with
``pause_minority`` and use ``net_ticktime = 10`` so that a partition is noticed in
seconds. ``rabbitmqctl`` runs inside the node's namespace with its host name.

Clients in the root namespace reach node ``i`` at ``10.213.<k>.<10+i>`` (AMQP 5672,
management 15672). See :mod:`tests.cluster.netns` for cuts and teardown.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from hopline.broker_node import amqp_answers
from tests.cluster.netns import Host, Network, sweep_stale

__all__ = ["Node", "RabbitCluster"]

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672


class Node:
    """One RabbitMQ node in its namespace: start, SIGKILL, stop, ``rabbitmqctl``."""

    def __init__(self, host: Host, base: Path, peers: Iterable[str], cookie: str) -> None:
        self.host = host
        self.base = base
        self.name = f"rabbit@{host.hostname}"
        self.peers = list(peers)
        self.cookie = cookie
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """AMQP URL of this node from the root namespace."""
        return f"amqp://guest:guest@{self.host.address}:{AMQP_PORT}/"

    @property
    def management_url(self) -> str:
        return f"http://{self.host.address}:{MANAGEMENT_PORT}"

    def _prepare(self) -> dict[str, str]:
        base = self.base
        for sub in ("mnesia", "log", "home"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (base / "rabbitmq-env.conf").write_text("")
        conf = [
            f"listeners.tcp.default = {AMQP_PORT}",
            "loopback_users = none",
            "cluster_partition_handling = pause_minority",
            "net_ticktime = 10",
            "cluster_formation.peer_discovery_backend = classic_config",
            *(
                f"cluster_formation.classic_config.nodes.{i} = {peer}"
                for i, peer in enumerate(self.peers, 1)
            ),
            f"management.tcp.port = {MANAGEMENT_PORT}",
            "collect_statistics_interval = 1000",
        ]
        (base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        cookie = base / "home" / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
        user = pwd.getpwnam("rabbitmq")
        for path in [base, *base.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        cookie.chmod(0o400)
        return {
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        }

    def _as_rabbitmq(self, env: dict[str, str], argv: list[str]) -> list[str]:
        setpriv = ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups"]
        path = f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}"
        variables = [f"{k}={v}" for k, v in env.items()]
        return self.host.command([*setpriv, "env", "-i", path, *variables, *argv])

    def start(self) -> None:
        """Start the node (returns at once; see :meth:`wait_serving`)."""
        env = self._prepare()
        with contextlib.suppress(FileNotFoundError):
            (self.base / "rabbit.pid").unlink()
        out = open(self.base / "server.out", "ab")  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(
            self._as_rabbitmq(env, [str(RABBIT_BIN / "rabbitmq-server")]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.base,  # the rabbitmq user may not be able to enter the checkout
        )
        out.close()

    def serving(self) -> bool:
        """Whether the node answers AMQP from the root namespace."""
        return amqp_answers(self.host.address, AMQP_PORT, timeout=1.0)

    def wait_serving(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.serving():
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.base / 'log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not serve within {timeout:g} s")
            time.sleep(0.2)

    def beam_pid(self) -> int | None:
        try:
            return int((self.base / "rabbit.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM, as a crash would (epmd stays)."""
        pid = self.beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
            self._process = None

    def reap(self) -> None:
        """Collect the exit status of the node's process (after its namespace was emptied)."""
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
            self._process = None

    def stop(self) -> None:
        """Stop the node gracefully."""
        self.ctl("stop", timeout=60)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(30)
            self._process = None

    def ctl(self, *args: str, timeout: float = 30, tool: str = "rabbitmqctl") -> str:
        """Run ``rabbitmqctl`` (or ``tool``) against this node from inside its namespace."""
        env = self._prepare_cli_env()
        argv = [str(RABBIT_BIN / tool), "-n", self.name, *args]
        result = subprocess.run(
            self._as_rabbitmq(env, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.name}: {result.stderr.strip()}")
        return result.stdout

    def _prepare_cli_env(self) -> dict[str, str]:
        return {
            "HOME": str(self.base / "home"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
        }

    def running_nodes(self) -> list[str]:
        """Cluster members this node sees running."""
        doc = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        return list(doc.get("running_nodes", []))


class RabbitCluster:
    """Three clustered nodes on a private network (a context manager tears it all down).

    Args:
        size: number of nodes.
        subnet: third octet of the private subnet (``10.213.<subnet>.0/24``); one per
            cluster alive at the same time.
    """

    def __init__(self, size: int = 3, subnet: int | None = None) -> None:
        self.tag = secrets.token_hex(2)
        subnet = subnet if subnet is not None else 100 + os.getpid() % 150
        self.network = Network(size, self.tag, subnet)
        self.base = Path(tempfile.mkdtemp(prefix=f"hopline-cluster-{self.tag}-"))
        self.base.chmod(0o755)  # the nodes run as the rabbitmq user
        peers = [f"rabbit@{h.hostname}" for h in self.network.hosts]
        cookie = secrets.token_hex(16).upper()
        self.nodes = [
            Node(host, self.base / host.hostname, peers, cookie) for host in self.network.hosts
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_named(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def node_at(self, address: str) -> Node:
        for node in self.nodes:
            if node.host.address == address:
                return node
        raise KeyError(address)

    def start(self, timeout: float = 120.0) -> None:
        """Create the network, start every node, wait until all run as one cluster.

        The first node is started alone and serving before the others: classic-config
        peer discovery takes no lock, so the others find a running peer to join rather
        than booting at the same moment as it.
        """
        sweep_stale()
        self.network.create()
        seed, *others = self.nodes
        seed.start()
        seed.wait_serving(timeout)
        for node in others:
            node.start()
        for node in others:
            node.wait_serving(timeout)
        self.wait_clustered(timeout)

    def wait_clustered(self, timeout: float = 60.0, nodes: list[Node] | None = None) -> None:
        """Wait until every node in ``nodes`` (default all) sees all of them running."""
        members = nodes or self.nodes
        expected = {n.name for n in members}
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(expected <= set(n.running_nodes()) for n in members):
                    return
            except (RuntimeError, subprocess.TimeoutExpired, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster did not form within {timeout:g} s")
            time.sleep(0.5)

    def management_get(self, path: str, node: Node | None = None) -> object:
        """GET ``/api/<path>`` from one running node's management API."""
        candidates = [node] if node else self.nodes
        last: Exception | None = None
        for candidate in candidates:
            request = urllib.request.Request(
                f"{candidate.management_url}/api/{path}",
                headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
            )
            try:
                with urllib.request.urlopen(request, timeout=3) as response:
                    return json.loads(response.read())
            except OSError as exc:
                last = exc
        raise RuntimeError(f"no management API answered: {last}")

    def queue_leader(self, queue: str) -> Node:
        """The node holding the leader of quorum queue ``queue``."""
        doc = self.management_get(f"queues/%2F/{quote(queue, safe='')}")
        assert isinstance(doc, dict)
        return self.node_named(str(doc.get("leader") or doc["node"]))

    def connection_nodes(self, name_prefix: str) -> list[str]:
        """Nodes that hold the client connections whose name starts with ``name_prefix``."""
        doc = self.management_get("connections")
        assert isinstance(doc, list)
        return [
            c["node"]
            for c in doc
            if str(c.get("client_properties", {}).get("connection_name", "")).startswith(
                name_prefix
            )
        ]

    def destroy(self) -> None:
        """Kill every node and remove network, namespaces and data (never raises)."""
        self.network.destroy()
        for node in self.nodes:
            node.reap()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> RabbitCluster:
        try:
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
