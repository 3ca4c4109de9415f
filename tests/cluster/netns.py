"""Private network namespaces on one bridge: each host gets its own name and address.

A :class:`Network` creates a Linux bridge in the root namespace with the address
``10.213.<k>.1/24`` and, per host, a namespace joined to it by a veth pair
(``10.213.<k>.<10+i>``), plus ``/etc/netns/<ns>/hosts`` naming every host, which
``ip netns exec`` mounts over ``/etc/hosts`` inside the namespace. Everything lives in
a subnet this harness creates; nothing is routed anywhere else.

Cutting a host off (:meth:`Network.cut`) sets the host end of its veth down: the
host can reach nobody and nobody (the root namespace included) can reach it, and
connections across the cut go silent rather than being reset, as in a real
partition. :meth:`Network.destroy` kills every process left in the namespaces and
removes them; a state directory with the owner's pid lets the next run remove what
a killed run left behind (:func:`sweep_stale`).

Needs root (``ip netns``, ``unshare``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Host", "Network", "sweep_stale"]

STATE_ROOT = Path(tempfile.gettempdir()) / "hopline-netns"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass(frozen=True, slots=True)
class Host:
    """One namespace: its name, host name, address and the root side of its veth."""

    netns: str
    hostname: str
    address: str
    veth: str

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace with this host name (own UTS namespace)."""
        script = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", script,
                self.hostname, *argv]  # fmt: skip


class Network:
    """A bridge and ``count`` namespaces named ``<prefix>-n<i>`` (use as a context manager).

    Args:
        count: how many hosts.
        tag: short unique tag (letters/digits, <= 5 chars) naming bridge, namespaces, veths.
        subnet: the third octet ``k`` of ``10.213.k.0/24``.
    """

    def __init__(self, count: int, tag: str, subnet: int) -> None:
        self.tag = tag
        self.bridge = f"hlb{tag}"
        self.gateway_address = f"10.213.{subnet}.1"
        self.hosts = [
            Host(f"hl{tag}-n{i}", f"hl{tag}-n{i}", f"10.213.{subnet}.{10 + i}", f"hl{tag}v{i}")
            for i in range(1, count + 1)
        ]
        self.state_dir = STATE_ROOT / tag

    def create(self) -> None:
        """Create the bridge, the namespaces, the veths and the hosts files."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "state.json").write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "bridge": self.bridge,
                    "netns": [h.netns for h in self.hosts],
                    "veths": [h.veth for h in self.hosts],
                }
            )
        )
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        hosts_lines = ["127.0.0.1 localhost"] + [f"{h.address} {h.hostname}" for h in self.hosts]
        for host in self.hosts:
            etc = Path("/etc/netns") / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("\n".join(hosts_lines) + "\n")
            _ip("netns", "add", host.netns)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            _ip("link", "set", host.veth, "master", self.bridge, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")

    def cut(self, host: Host) -> None:
        """Partition ``host`` from everyone (its veth down; packets vanish silently)."""
        _ip("link", "set", host.veth, "down")

    def heal(self, host: Host) -> None:
        """Undo :meth:`cut`."""
        _ip("link", "set", host.veth, "up")

    def kill_all(self, host: Host) -> None:
        """SIGKILL every process inside ``host``'s namespace."""
        _kill_netns(host.netns)

    def destroy(self) -> None:
        """Kill every process in the namespaces and remove everything (never raises)."""
        _destroy(self.bridge, [h.netns for h in self.hosts], [h.veth for h in self.hosts])
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Network:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _kill_netns(netns: str) -> None:
    result = _ip("netns", "pids", netns, check=False)
    for pid in result.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _destroy(bridge: str, namespaces: list[str], veths: list[str]) -> None:
    for netns in namespaces:
        _kill_netns(netns)
        _ip("netns", "del", netns, check=False)
        shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)
    # A namespace outlives its name while a killed process still holds it, and its veth
    # pair with it: delete the root side too (that removes both ends).
    for veth in veths:
        _ip("link", "del", veth, check=False)
    _ip("link", "del", bridge, check=False)


def sweep_stale() -> None:
    """Remove networks left behind by harness runs whose process is gone."""
    if not STATE_ROOT.is_dir():
        return
    for state_file in STATE_ROOT.glob("*/state.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(int(state["pid"]), 0)
        except ProcessLookupError:
            _destroy(state["bridge"], state["netns"], state.get("veths", []))
            shutil.rmtree(state_file.parent, ignore_errors=True)
        except (PermissionError, KeyError, ValueError):
            continue
