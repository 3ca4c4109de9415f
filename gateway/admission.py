"""Connection-level defences: counts at TCP accept, the gateway's connection class, /stream rate.

* :class:`AcceptCounter` counts every accepted TCP connection (handshakes in
  progress included) overall and per address, and says which new ones to refuse.
* :class:`StreamLimiter`: ``/stream`` rate-limited per address like a socket.
* :class:`GatewayConnection`: websockets' connection with the gateway's policy on
  the hooks of :class:`~gateway._websockets_compat.HookedConnection`: refusal at
  accept, the request-head size cap, slot release, the ping cap.

Limits and what a client sees are listed in docs/hardening.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection

from gateway import _websockets_compat as compat
from gateway.config import GatewaySettings
from gateway.security import TokenBucket
from gateway.session import POLICY_VIOLATION

if TYPE_CHECKING:
    from gateway.server import Gateway
    from gateway.session import Session

__all__ = [
    "CONTROL_BACKLOG_LIMIT",
    "MONITORING_RESERVE",
    "AcceptCounter",
    "GatewayConnection",
    "StreamLimiter",
    "connection_class",
    "drop",
]

log = logging.getLogger("gateway.server")

# Bytes of automatic replies (pongs, close frames) that may pile up in the write
# buffer of a client that stopped reading; past that (a ping flood) it is cut at once.
CONTROL_BACKLOG_LIMIT = 256 * 1024

# TCP connections accepted beyond --max-connections, so /health, /metrics and
# /stats still answer when every slot is taken.
MONITORING_RESERVE = 16


def _canned(status: int, phrase: str, body: str, retry_after: bool = True) -> bytes:
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    return (head + ("Retry-After: 1\r\n" if retry_after else "") + "\r\n" + body).encode()


FULL = _canned(503, "Service Unavailable", "too many connections\n")
ADDRESS_FULL = _canned(429, "Too Many Requests", "too many connections from this address\n")
HEAD_TOO_LARGE = _canned(
    431, "Request Header Fields Too Large", "request header too large\n", retry_after=False
)


class AcceptCounter:
    """Accepted TCP connections, overall and per address (pure).

    Args:
        max_connections: the gateway's slot cap (0: none); connections are refused
            at accept beyond it plus :data:`MONITORING_RESERVE`.
        per_address: most connections from one address (0: none).
    """

    def __init__(self, max_connections: int, per_address: int) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self.total = 0
        self._by_address: dict[str, int] = {}

    def refusal(self, address: str) -> bytes | None:
        """The canned response refusing a new connection from ``address``, or None."""
        if self.max_connections and self.total >= self.max_connections + MONITORING_RESERVE:
            return FULL
        if self.per_address and self._by_address.get(address, 0) >= self.per_address:
            return ADDRESS_FULL
        return None

    def accepted(self, address: str) -> None:
        """Count an accepted connection."""
        self.total += 1
        if self.per_address:
            self._by_address[address] = self._by_address.get(address, 0) + 1

    def released(self, address: str) -> None:
        """Forget an accepted connection that ended."""
        self.total -= 1
        count = self._by_address.get(address)
        if count is not None:
            if count <= 1:
                del self._by_address[address]
            else:
                self._by_address[address] = count - 1


class StreamLimiter:
    """``/stream`` requests per address through a token bucket each (pure; 0 rate: off)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst or max(1, int(rate))
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, address: str, now: float) -> bool:
        """Spend a token of ``address``'s bucket; False means over the limit."""
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def prune(self, now: float) -> None:
        """Forget buckets that have refilled (memory stays proportional to active addresses)."""
        if self._buckets:
            self._buckets = {a: b for a, b in self._buckets.items() if not b.full(now)}

    def __len__(self) -> int:
        return len(self._buckets)


def drop(ws: ServerConnection, reason: str) -> None:
    """Cut ``ws`` now, without a close handshake (its client is not reading)."""
    if not ws.transport.is_closing():
        log.info("dropping connection from %s: %s", ws.remote_address, reason)
        ws.transport.abort()


class GatewayConnection(compat.HookedConnection):
    """The gateway's connection: refusal at accept, head cap, slot release, pings.

    * Counts every accepted TCP connection (handshakes in progress included) and
      refuses, at accept, those beyond the gateway's caps (canned 503 / 429).
    * Refuses a request head larger than ``max_header_bytes`` with 431.
    * Returns its connection slot (see ``Gateway._admit``) when it ends.
    * Caps pings per second (and spends rate-limit tokens on them, see
      :meth:`Session.on_ping`); aborts a client that keeps sending pings while
      not reading the pongs.
    """

    gateway: Gateway | None = None
    settings: GatewaySettings = GatewaySettings()
    holds_slot = False
    session: Session | None = None
    address: str | None = None
    _pings: TokenBucket | None = None

    def accept_transport(self, transport: asyncio.Transport) -> bool:
        gw = self.gateway
        assert gw is not None
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        refusal = gw.accepts.refusal(address)
        if refusal is not None:
            log.debug("refused %s at accept: %d connections", address, gw.accepts.total)
            transport.write(refusal)
            transport.close()
            return False
        self.address = address
        gw.accepts.accepted(address)
        return True

    def head_bytes(self, total: int) -> bool:
        if total <= self.settings.max_header_bytes:
            return True
        log.debug("refused %s: request head over %d bytes", self.remote_address, total)
        compat.answer_and_close(self, HEAD_TOO_LARGE)
        return False

    def on_lost(self) -> None:
        gw = self.gateway
        if gw is None:
            return
        gw.accepts.released(self.address or "")
        if self.session is not None:
            self.session.connection_lost()
        if self.holds_slot:
            self.holds_slot = False
            gw.release_slot(self)

    def on_ping(self) -> None:
        if self.transport.get_write_buffer_size() > CONTROL_BACKLOG_LIMIT + 2**15:
            drop(self, "it sends control frames but does not read the replies")
            return
        rate = self.settings.max_ping_rate
        if rate > 0:
            now = self.loop.time()
            if self._pings is None:
                self._pings = TokenBucket(rate, max(1, int(rate)), now)
            if not self._pings.take(now):
                log.info("closing connection from %s: too many pings", self.remote_address)
                abort_after = min(self.settings.write_timeout, self.close_timeout or 10.0)
                compat.fail(self, POLICY_VIOLATION, "too many pings", abort_after)
                return
        if self.session is not None:
            self.session.on_ping()


def connection_class(gateway: Gateway) -> type[GatewayConnection]:
    """The connection class ``serve`` creates for ``gateway``'s clients."""

    class _Connection(GatewayConnection):
        pass

    _Connection.handshake_timeout = gateway.settings.handshake_timeout
    _Connection.gateway = gateway
    _Connection.settings = gateway.settings
    return _Connection
