"""Gateway settings: one frozen dataclass; each field with a setting is also an option.

The declarations below are the only place a gateway option is written: the click
options of ``hopline gateway`` and ``hopline up``, their environment variables and the
configuration reference are generated from them (see :mod:`hopline.settings`). This
module stays light (no aio-pika, no PyJWT) because every command imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import click

from hopline.settings import setting
from hopline.settings.common import RABBITMQ_ORDER, RABBITMQ_URL, TOKEN_SECRET, TOPOLOGY
from hopline.wire.amqp import QueueTopology
from hopline.wire.defaults import DEFAULT_GATEWAY_PORT

__all__ = ["GatewaySettings"]

BatchingMode = Literal["auto", "on", "off"]


def _origins(values: Iterable[str]) -> frozenset[str]:
    from gateway.security import parse_origins

    return parse_origins(values)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything the gateway needs to run.

    Attributes:
        rabbitmq_url: AMQP URL of the broker.
        host, port: where the HTTP/WebSocket server listens.
        topology: names and arguments of the input queues.
        request_timeout: seconds a request may wait for its reply; also the
            AMQP ``expiration`` of the request, so no processor works on it later.
        window: requests one socket may have in flight; when full, the gateway
            stops reading that socket and TCP pushes back on the client.
        batching: ``auto`` packs requests into batches while hopline processors
            consume the batch queue, ``on`` always, ``off`` never (one plain AMQP
            message per request). Ignored with ``topology.max_length``: see
            :attr:`batching_mode`.
        max_batch: most requests in one batch message.
        max_batch_bytes: most payload bytes in one batch message (a larger request
            travels alone).
        max_pending: most requests pending in this gateway (submitted, not yet
            answered); more get ``busy`` at once. 0 means no cap.
        no_consumer_grace: seconds the input queues may have no consumer before new
            requests get ``unavailable`` at once instead of waiting for their
            deadline in a queue nobody reads, and ``/health`` says 503. 0 disables.
        max_pending_bytes: most payload bytes pending in this gateway; more get
            ``busy`` at once. 0 means no cap.
        compression: ``deflate`` negotiates permessage-deflate with clients that
            offer it; ``none`` never does (less memory per socket and CPU).
        max_message_size: largest frame accepted from a client, in bytes
            (larger frames close the socket with 1009).
        persistent: publish requests as persistent messages.
        management_url: optional RabbitMQ management API base URL (or a
            comma-separated list, one per node), used for queue statistics (adds
            unacknowledged counts, queue type and leader).
        stats_interval: seconds between two queue-depth samples.
        handshake_timeout: seconds a new connection may take to send its HTTP
            request; slower ones are dropped.
        drain_timeout: seconds to let in-flight requests finish on shutdown.
        max_connections: most client connections at once (open ``/ws`` sockets
            plus ``/stream`` requests being answered); further ones get HTTP 503
            before the upgrade; handshakes in progress count from TCP accept, and
            beyond ``max_connections`` + 16 (a reserve for /health, /metrics and
            /stats) a new connection is refused at once. 0 means no limit.
        rate_limit: requests per second one socket may make on average (token
            bucket); excess requests get a ``busy`` error. 0 disables the limit.
        rate_burst: requests one socket may make at once above ``rate_limit``
            (the bucket size); 0 means ``max(1, rate_limit)``.
        write_timeout: seconds a reply may wait for a client that does not read
            (its buffers full) before the gateway drops the connection.
        idle_timeout: seconds a socket may stay with nothing in flight and no
            request before it is closed with 1000 ``idle timeout``; 0 disables.
        max_connections_per_address: most connections (handshakes included) from
            one IP address; more are refused at once with HTTP 429. 0 means no limit.
        max_header_bytes: most bytes of a handshake's request line and headers;
            more get HTTP 431 and the connection is closed.
        max_headers: most header lines in a handshake request (431 beyond).
        max_subprotocols: most ``Sec-WebSocket-Protocol`` entries offered (400 beyond).
        max_ping_rate: pings per second one socket may send (a bucket of as many);
            beyond it the socket is closed with 1008. 0 disables.
        rate_grace: seconds (and ``rate_limit * rate_grace`` refused frames) a
            socket may keep exceeding ``rate_limit`` before it is closed with 1008; 0: never.
        max_in_flight_bytes: request bytes one socket may have in flight; like
            ``window``, the gateway stops reading the socket while it is reached.
        max_send_queue: bytes of replies that may wait for one client (beyond its
            first queued reply); past that the socket is closed with 1008.
        allowed_origins: normalised origins (``scheme://host[:port]``) allowed
            to open ``/ws``; empty allows all. Requests without ``Origin``
            (non-browser clients) are always allowed.
        workers: gateway processes sharing the port (see :mod:`hopline.workers`);
            read by the command, a :class:`~gateway.server.Gateway` is one of them.
        rabbitmq_order: ``shuffle`` tries the broker addresses in random order on
            every (re)connect; ``listed`` in the order given.
        connect_attempt_timeout: seconds one broker address may take to connect
            and set up before the next one is tried.
        token_secret: HS256 secret; when set, ``/ws`` and ``/stream`` require a
            valid JWT (see :mod:`gateway.security`).
    """

    rabbitmq_url: str = RABBITMQ_URL.field()
    rabbitmq_order: Literal["shuffle", "listed"] = RABBITMQ_ORDER.field()
    host: str = setting("0.0.0.0", "Listen address.")
    port: int = setting(
        DEFAULT_GATEWAY_PORT, "Listen port (0 picks a free one).", type=click.IntRange(0, 65535)
    )
    topology: QueueTopology = TOPOLOGY.field()
    request_timeout: float = setting(
        30.0,
        "Seconds a request waits for its reply (also its AMQP expiration).",
        type=click.FloatRange(min=0.001),
    )
    window: int = setting(
        128, "Requests one socket may have in flight.", type=click.IntRange(min=1)
    )
    batching: BatchingMode = setting(
        "auto",
        "Pack requests into batch messages: auto = while hopline processors listen.",
        type=click.Choice(["auto", "on", "off"]),
    )
    max_batch: int = setting(512, "Most requests in one batch message.", type=click.IntRange(min=1))
    max_batch_bytes: int = setting(
        1024 * 1024,
        "Most payload bytes in one batch message (a larger request travels alone).",
        type=click.IntRange(min=1),
    )
    max_pending: int = setting(
        100_000,
        "Most requests pending in the gateway; more get 'busy' at once (0 = no cap).",
        type=click.IntRange(min=0),
    )
    max_pending_bytes: int = setting(
        64 * 1024 * 1024,
        "Most payload bytes pending in the gateway; more get 'busy' at once (0 = no cap).",
        type=click.IntRange(min=0),
    )
    no_consumer_grace: float = setting(
        5.0,
        "Seconds without any processor consuming before requests get 'unavailable' "
        "at once (0 = wait for the deadline).",
        type=click.FloatRange(min=0),
    )
    max_message_size: int = setting(
        64 * 1024,
        "Largest client frame in bytes; larger ones close the socket with 1009.",
        type=click.IntRange(min=1),
    )
    compression: Literal["deflate", "none"] = setting(
        "deflate",
        "permessage-deflate for clients that offer it (about 45 KiB per socket "
        "instead of 20); none saves memory and CPU on small messages.",
        type=click.Choice(["deflate", "none"]),
    )
    persistent: bool = setting(
        False, "Publish requests as persistent messages.", off_flag="--transient"
    )
    management_url: str | None = setting(
        None,
        "RabbitMQ management API base URL (comma-separated: one per node), for unacked "
        "counts, queue type and leader in /stats.",
    )
    workers: int = setting(
        1,
        "Gateway processes sharing the port (SO_REUSEPORT; the kernel spreads "
        "connections); /health, /metrics and /stats are per worker.",
        type=click.IntRange(min=1),
    )
    stats_interval: float = 1.0
    connect_attempt_timeout: float = 3.0
    handshake_timeout: float = setting(
        10.0,
        "Seconds a new connection may take to send its HTTP request.",
        type=click.FloatRange(min=0.001),
    )
    drain_timeout: float = setting(
        10.0,
        "Seconds to let in-flight requests finish on shutdown.",
        type=click.FloatRange(min=0),
    )
    # Limits and admission (gateway/security.py)
    max_connections: int = setting(
        10_000,
        "Most open /ws sockets plus /stream requests; more get HTTP 503 (0 = no limit).",
        type=click.IntRange(min=0),
    )
    rate_limit: float = setting(
        0.0,
        "Requests per second per socket (token bucket); excess gets 'busy' (0 = off).",
        type=click.FloatRange(min=0),
    )
    rate_burst: int = setting(
        0,
        "Token bucket size: requests one socket may send in a burst (0 = max(1, rate)).",
        type=click.IntRange(min=0),
    )
    write_timeout: float = setting(
        10.0,
        "Seconds a reply may wait on a client that stops reading before it is dropped.",
        type=click.FloatRange(min=0.001),
    )
    idle_timeout: float = setting(
        300.0,
        "Seconds a socket may stay without a request before it is closed "
        "(1000 'idle timeout'; 0 = never).",
        type=click.FloatRange(min=0),
    )
    max_connections_per_address: int = setting(
        0,
        "Most connections (handshakes included) from one IP address; more get "
        "HTTP 429 (0 = no limit).",
        type=click.IntRange(min=0),
    )
    max_header_bytes: int = setting(
        16 * 1024,
        "Largest handshake request head (request line and headers); larger gets HTTP 431.",
        type=click.IntRange(min=256),
    )
    max_headers: int = setting(
        64,
        "Most header lines in a handshake request; more get HTTP 431 (0 = websockets' 128).",
        type=click.IntRange(min=0),
    )
    max_subprotocols: int = setting(
        16,
        "Most Sec-WebSocket-Protocol entries offered; more get HTTP 400 (0 = no limit).",
        type=click.IntRange(min=0),
    )
    max_ping_rate: float = setting(
        10.0,
        "Pings per second one socket may send; more close it with 1008 (0 = no cap).",
        type=click.FloatRange(min=0),
    )
    rate_grace: float = setting(
        5.0,
        "Seconds a socket may keep exceeding --rate-limit (at most rate x grace 'busy' "
        "answers) before it is closed with 1008 (0 = never).",
        type=click.FloatRange(min=0),
    )
    max_in_flight_bytes: int = setting(
        1024 * 1024,
        "Request bytes one socket may have in flight; at the cap the gateway stops "
        "reading it, like --window (0 = no cap).",
        type=click.IntRange(min=0),
    )
    max_send_queue: int = setting(
        4 * 1024 * 1024,
        "Bytes of replies that may wait for one slow client; more close it with 1008.",
        type=click.IntRange(min=1024),
    )
    allowed_origins: frozenset[str] = setting(
        frozenset(),
        "Origin allowed to connect (repeatable; env: comma/space separated); "
        "others get 403. Default: any. Requests without Origin are allowed.",
        flag="--allowed-origin",
        multiple=True,
        show_default=False,
        convert=_origins,
        cli_default=(),
    )
    token_secret: str | None = TOKEN_SECRET.field(repr=False)

    @property
    def batching_mode(self) -> BatchingMode:
        """The batching the gateway applies: ``off`` whenever the queue has a length cap.

        ``x-max-length`` counts AMQP messages, and a batch message holds up to
        ``max_batch`` requests; so with ``topology.max_length`` every request travels
        as its own message, and the broker's count is a count of requests. (A byte
        cap, ``topology.max_bytes``, counts the same whatever the batching.)
        """
        return "off" if self.topology.max_length is not None else self.batching
