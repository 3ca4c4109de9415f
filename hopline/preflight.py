"""Checks a command makes before it starts anything, so a mistake ends in seconds.

Nothing is connected to or declared before they pass: a port that is taken does not
leave queues behind on the broker.

A client library told to connect to a port that is not RabbitMQ's waits for its
whole connection timeout (or retries for ever); a probe of the AMQP protocol header
tells a closed port, another service and an unresolvable name apart in seconds,
with a reason a user can act on.
"""

from __future__ import annotations

import socket

from yarl import URL

from hopline.broker_node import amqp_problem
from hopline.wire.connect import redact_url

__all__ = ["broker_problem", "port_problem", "split_urls"]

PROBE_TIMEOUT = 3.0  # seconds: a RabbitMQ node answers the header at once


def split_urls(urls: str) -> list[str]:
    """The addresses of a comma-separated RABBITMQ_URL list, blanks dropped."""
    return [part.strip() for part in urls.split(",") if part.strip()]


def broker_problem(urls: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when an AMQP broker answers at one of ``urls``, else one line saying why not.

    ``amqps`` addresses are not probed (the TLS handshake is the library's job): a
    list holding one counts as answering.
    """
    reasons: list[str] = []
    for url in split_urls(urls):
        try:
            parsed = URL(url)
            host, port = parsed.host, parsed.port
        except ValueError:
            host, port, parsed = None, None, None
        if parsed is not None and parsed.scheme == "amqps":
            return None
        if not host:
            reasons.append(f"not an AMQP URL: {redact_url(url)!r}")
            continue
        problem = amqp_problem(host, port or 5672, timeout)
        if problem is None:
            return None
        reasons.append(f"cannot reach RabbitMQ at {redact_url(url)}: {problem}")
    return "; ".join(reasons) or "no RabbitMQ address given"


def port_problem(host: str, port: int) -> OSError | None:
    """None when ``host:port`` can be listened on right now (port 0 always can), else why not.

    Binds (with ``SO_REUSEADDR``, as asyncio's server does) and closes again; a port
    some process listens on, even with ``SO_REUSEPORT``, fails with ``EADDRINUSE``.
    """
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(
            host or None,
            port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
    except OSError as exc:
        return exc
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
        except OSError as exc:
            return exc
    return None
