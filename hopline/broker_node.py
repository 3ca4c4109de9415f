"""A private RabbitMQ node on its own ports and data directory.

``hopline up`` starts one when ``RABBITMQ_URL`` does not answer and
``rabbitmq-server`` is installed; the fault tests start one to kill and restart.
Debian's wrapper runs the broker as the ``rabbitmq`` user, so the data directory
is handed to that user when it exists.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = [
    "PrivateBroker",
    "amqp_answers",
    "amqp_problem",
    "free_port",
    "is_local_host",
    "node_port",
    "port_answers",
    "rabbitmq_server_path",
]


def rabbitmq_server_path() -> str | None:
    """Path of ``rabbitmq-server``, or None when it is not installed."""
    return shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if os.path.exists("/usr/sbin/rabbitmq-server") else None
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Where Linux says which local ports it picks for outgoing connections (and port 0).
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Lowest port :func:`node_port` picks: below are the well-known and most registered ones.
NODE_PORTS_FROM = 10000


def node_port() -> int:
    """A TCP port nothing is bound to right now, outside the kernel's ephemeral range.

    For a listener another process binds seconds later (a RabbitMQ node's AMQP,
    distribution and management ports). A :func:`free_port` number comes from the
    ephemeral range, where the kernel also picks the local port of every outgoing
    connection: on a busy machine one takes it before the node binds it, and the node
    fails to start (``dist_port_already_used``). A port outside that range is only
    taken by a program that binds it by number. Where the range cannot be read
    (not Linux), this is :func:`free_port`.
    """
    try:
        low, high = (int(n) for n in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return free_port()
    spans = [(NODE_PORTS_FROM, low - 1), (high + 1, 65535)]
    spans = [(a, b) for a, b in spans if a <= b]
    for _ in range(100):
        if not spans:
            break
        first, last = random.choice(spans)
        port = random.randint(first, last)
        with socket.socket() as sock:
            try:
                sock.bind(("", port))  # every address, as the distribution listener binds
            except OSError:
                continue
        return port
    return free_port()


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def amqp_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether an AMQP 0-9-1 broker at ``host:port`` answers the protocol header.

    The node opens its port a little before it serves connections; a broker that
    is ready answers the header with a ``connection.start`` method frame.
    """
    return amqp_problem(host, port, timeout) is None


def amqp_problem(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None when an AMQP 0-9-1 broker answers at ``host:port``, else why not (one line).

    Sends the protocol header and expects a method frame back within ``timeout``: a
    port that is closed, that belongs to another service (which answers something
    else, or nothing), or a host that does not resolve is told apart in seconds,
    where a client library would wait for its whole connection timeout or retry.
    """
    connected = False
    frame = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            connected = True
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            while len(frame) < 7:
                chunk = sock.recv(7 - len(frame))
                if not chunk:
                    break
                frame += chunk
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r}: {exc.strerror or exc}"
    except TimeoutError:
        if connected:
            return (
                f"port {port} accepts connections but did not answer the AMQP handshake "
                f"within {timeout:g} s (is it RabbitMQ's AMQP port?)"
            )
        return f"no connection within {timeout:g} s"
    except OSError as exc:
        return str(exc.strerror or exc).lower()
    if len(frame) == 7 and frame[0] == 1:  # a method frame on channel 0
        return None
    if frame.startswith(b"AMQP"):
        return f"port {port} speaks another AMQP version (RabbitMQ speaks 0-9-1)"
    return f"port {port} answers but not as an AMQP broker (is it RabbitMQ's AMQP port?)"


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine's loopback (localhost, 127.0.0.0/8, ::1).

    Raises:
        OSError: the name does not resolve (``socket.gaierror``).
    """
    if host in ("localhost", ""):
        return True
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class PrivateBroker:
    """Start, kill and restart one RabbitMQ node (a context manager stops it).

    Args:
        base_dir: data and log directory; a fresh temporary one when None.
        port: AMQP port; a free one (:func:`node_port`) when None, kept over restarts.
        management_port: also enable the management plugin on this port.

    The Erlang distribution port is internal: every start picks a free one anew, so a
    restart does not depend on a port left unbound while the node was down.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        port: int | None = None,
        management_port: int | None = None,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="hopline-rabbit-"))
        self.port = port or node_port()
        self.dist_port = 0  # picked anew by every start
        self.management_port = management_port
        self.nodename = f"hopline-{self.port}@localhost"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """AMQP URL of the node."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "rabbit.pid"

    def _prepare(self) -> dict[str, str]:
        self.dist_port = node_port()  # on a restart, the last one may be taken by now
        base = self.base_dir
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "log").mkdir(parents=True, exist_ok=True)
        plugins = "[rabbitmq_management]." if self.management_port else "[]."
        (base / "enabled_plugins").write_text(plugins + "\n")
        conf = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            "loopback_users = none",
        ]
        if self.management_port:
            conf += [
                f"management.tcp.port = {self.management_port}",
                "management.tcp.ip = 127.0.0.1",
            ]
        (base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        with contextlib.suppress(KeyError, PermissionError):
            user = pwd.getpwnam("rabbitmq")
            for path in [base, *base.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_PID_FILE=str(self.pid_file),
        )
        return env

    def start(self, timeout: float = 60.0) -> None:
        """Start the node and wait until it answers AMQP (same port and data on a restart).

        Raises:
            FileNotFoundError: ``rabbitmq-server`` is not installed.
            TimeoutError: the node did not answer within ``timeout`` (its log
                directory is named in the message).
        """
        server = rabbitmq_server_path()
        if server is None:
            raise FileNotFoundError("rabbitmq-server is not installed")
        env = self._prepare()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        log = open(self.base_dir / "server.out", "ab")  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(
            [server],
            env=env,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not amqp_answers("127.0.0.1", self.port):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited with {self._process.returncode}: "
                    f"{self._failure_reason()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"private RabbitMQ node did not answer on port {self.port} within "
                    f"{timeout:g} s; logs in {self.base_dir / 'log'}"
                )
            time.sleep(0.2)

    def _failure_reason(self) -> str:
        """The last telling line of the node's output (its data directory may be removed)."""
        try:
            lines = (self.base_dir / "server.out").read_text(errors="replace").splitlines()
        except OSError:
            return "no output"
        telling = [line.strip() for line in lines if line.strip()]
        telling = [line for line in telling if not line.startswith("Crash dump")]
        return telling[-1][:300] if telling else "no output"

    def _beam_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _node_processes(self) -> list[int]:
        """Every live process of this node (wrapper shell, beam, its helpers), found by
        the ``RABBITMQ_NODENAME`` in its environment.

        Debian's ``rabbitmq-server`` runs the node through ``su``, which starts a new
        session: before the node writes its pid file, killing our child's process
        group would kill ``su`` and orphan the node. Reading other users' environments
        needs root, which is also the only case in which ``su`` is involved.
        """
        marker = f"RABBITMQ_NODENAME={self.nodename}\0".encode()
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes() and int(entry.name) != os.getpid():
                    found.append(int(entry.name))
        return found

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        pid = self._beam_pid()
        targets = [pid] if pid is not None and sig != signal.SIGKILL else []
        if not targets:
            targets = self._node_processes()
        for target in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)
        if self._process is not None:
            if not targets:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, sig)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                for target in [*self._node_processes(), self._process.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(target, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(5)
            self._process = None
        deadline = time.monotonic() + timeout
        while (
            port_answers("127.0.0.1", self.port) or self._node_processes()
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        # A node signalled while it boots may outlive its wrapper and ignore SIGTERM: kill it.
        leftovers = self._node_processes()
        for target in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while leftovers and self._node_processes() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node gracefully (SIGTERM), then forcefully if it lingers."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Kill the node at once (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL, 10.0)

    def cleanup(self) -> None:
        """Stop the node and remove a temporary data directory."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PrivateBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
