"""Gateway settings: one frozen dataclass, filled by the CLI from options and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hopline.wire.amqp import QueueTopology
from hopline.wire.defaults import DEFAULT_GATEWAY_PORT, DEFAULT_RABBITMQ_URL

__all__ = ["GatewaySettings"]

BatchingMode = Literal["auto", "on", "off"]


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
            message per request).
        max_batch: most requests in one batch message.
        max_batch_bytes: most payload bytes in one batch message (a larger request
            travels alone), so a queue length cap also bounds the queue's bytes.
        max_pending: most requests pending in this gateway (submitted, not yet
            answered); more get ``busy`` at once. 0 means no cap.
        max_pending_bytes: most payload bytes pending in this gateway; more get
            ``busy`` at once. 0 means no cap.
        compression: ``deflate`` negotiates permessage-deflate with clients that
            offer it; ``none`` never does (less memory per socket and CPU).
        max_message_size: largest frame accepted from a client, in bytes
            (larger frames close the socket with 1009).
        persistent: publish requests as persistent messages.
        management_url: optional RabbitMQ management API base URL, used for queue
            statistics (adds unacknowledged counts).
        stats_interval: seconds between two queue-depth samples.
        handshake_timeout: seconds a new connection may take to send its HTTP
            request; slower ones are dropped.
        drain_timeout: seconds to let in-flight requests finish on shutdown.
        max_connections: most client connections at once (open ``/ws`` sockets
            plus ``/stream`` requests being answered); further ones get HTTP 503
            before the upgrade. 0 means no limit. /health, /metrics and /stats are
            always answered.
        rate_limit: requests per second one socket may make on average (token
            bucket); excess requests get a ``busy`` error. 0 disables the limit.
        rate_burst: requests one socket may make at once above ``rate_limit``
            (the bucket size); 0 means ``max(1, rate_limit)``.
        send_timeout: seconds a reply may wait for a client that does not read
            (its buffers full) before the gateway drops the connection.
        allowed_origins: normalised origins (``scheme://host[:port]``) allowed
            to open ``/ws``; empty allows all. Requests without ``Origin``
            (non-browser clients) are always allowed.
        token_secret: HS256 secret; when set, ``/ws`` and ``/stream`` require a
            valid JWT (see :mod:`gateway.security`).
    """

    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    host: str = "0.0.0.0"
    port: int = DEFAULT_GATEWAY_PORT
    topology: QueueTopology = field(default_factory=QueueTopology)
    request_timeout: float = 30.0
    window: int = 128
    batching: BatchingMode = "auto"
    max_batch: int = 512
    max_batch_bytes: int = 1024 * 1024
    max_pending: int = 100_000
    max_pending_bytes: int = 64 * 1024 * 1024
    max_message_size: int = 64 * 1024
    compression: Literal["deflate", "none"] = "deflate"
    persistent: bool = False
    management_url: str | None = None
    stats_interval: float = 1.0
    handshake_timeout: float = 10.0
    drain_timeout: float = 10.0
    max_connections: int = 10_000
    rate_limit: float = 0.0
    rate_burst: int = 0
    send_timeout: float = 10.0
    allowed_origins: frozenset[str] = frozenset()
    token_secret: str | None = field(default=None, repr=False)
