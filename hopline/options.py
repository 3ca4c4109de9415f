"""Click options shared by several subcommands, each with its environment variable.

Every option reads ``HOPLINE_<NAME>`` (``RABBITMQ_URL`` for the broker URL, as in
the original design) when it is not given, and ``--help`` shows both the variable
and the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gateway.config import DEFAULT_RABBITMQ_URL, GatewaySettings
from gateway.security import check_secret, parse_origins
from hopline.wire.amqp import QueueTopology
from processor.worker import ProcessorSettings

__all__ = [
    "gateway_options",
    "gateway_settings",
    "option",
    "processor_options",
    "processor_settings",
    "token_option",
    "topology_options",
]

F = Callable[..., Any]

_GATEWAY_DEFAULTS = GatewaySettings()
_PROCESSOR_DEFAULTS = ProcessorSettings()


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` that always names its environment variable and shows defaults."""
    kwargs.setdefault("show_default", True)
    return click.option(*decls, envvar=env, show_envvar=True, **kwargs)


def _check_secret(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            check_secret(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value or None


def _compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


broker_url_option = option(
    "--rabbitmq-url", env="RABBITMQ_URL", default=DEFAULT_RABBITMQ_URL, help="AMQP URL of RabbitMQ."
)

token_option = option(
    "--token",
    env="HOPLINE_TOKEN",
    default=None,
    show_default=False,
    help="JWT for a gateway run with --token-secret (sent as 'Authorization: Bearer').",
)

topology_options = _compose(
    broker_url_option,
    option(
        "--input-queue",
        env="HOPLINE_INPUT_QUEUE",
        default="input_queue",
        help="Durable queue requests are published to.",
    ),
    option(
        "--queue-type",
        env="HOPLINE_QUEUE_TYPE",
        default="classic",
        type=click.Choice(["classic", "quorum"]),
        help="Input queue type; quorum for clustered brokers.",
    ),
    option(
        "--max-queue-length",
        env="HOPLINE_MAX_QUEUE_LENGTH",
        type=click.IntRange(min=1),
        default=None,
        help="Broker-side input queue limit; excess requests get 'busy'.",
    ),
    option(
        "--max-queue-bytes",
        env="HOPLINE_MAX_QUEUE_BYTES",
        type=click.IntRange(min=1),
        default=None,
        help="Broker-side input queue limit in body bytes; excess requests get 'busy'.",
    ),
    option(
        "--delivery-limit",
        env="HOPLINE_DELIVERY_LIMIT",
        type=click.IntRange(min=1),
        default=None,
        help="Deliveries before a request is dead-lettered to <queue>.dead.",
    ),
)

gateway_options = _compose(
    option("--host", env="HOPLINE_HOST", default=_GATEWAY_DEFAULTS.host, help="Listen address."),
    option(
        "--port",
        env="HOPLINE_PORT",
        default=_GATEWAY_DEFAULTS.port,
        type=click.IntRange(0, 65535),
        help="Listen port (0 picks a free one).",
    ),
    option(
        "--request-timeout",
        env="HOPLINE_REQUEST_TIMEOUT",
        default=_GATEWAY_DEFAULTS.request_timeout,
        type=click.FloatRange(min=0.001),
        help="Seconds a request waits for its reply (also its AMQP expiration).",
    ),
    option(
        "--window",
        env="HOPLINE_WINDOW",
        default=_GATEWAY_DEFAULTS.window,
        type=click.IntRange(min=1),
        help="Requests one socket may have in flight.",
    ),
    option(
        "--batching",
        env="HOPLINE_BATCHING",
        default=_GATEWAY_DEFAULTS.batching,
        type=click.Choice(["auto", "on", "off"]),
        help="Pack requests into batch messages: auto = while hopline processors listen.",
    ),
    option(
        "--max-batch",
        env="HOPLINE_MAX_BATCH",
        default=_GATEWAY_DEFAULTS.max_batch,
        type=click.IntRange(min=1),
        help="Most requests in one batch message.",
    ),
    option(
        "--max-batch-bytes",
        env="HOPLINE_MAX_BATCH_BYTES",
        default=_GATEWAY_DEFAULTS.max_batch_bytes,
        type=click.IntRange(min=1),
        help="Most payload bytes in one batch message (a larger request travels alone).",
    ),
    option(
        "--max-pending",
        env="HOPLINE_MAX_PENDING",
        default=_GATEWAY_DEFAULTS.max_pending,
        type=click.IntRange(min=0),
        help="Most requests pending in the gateway; more get 'busy' at once (0 = no cap).",
    ),
    option(
        "--max-pending-bytes",
        env="HOPLINE_MAX_PENDING_BYTES",
        default=_GATEWAY_DEFAULTS.max_pending_bytes,
        type=click.IntRange(min=0),
        help="Most payload bytes pending in the gateway; more get 'busy' at once (0 = no cap).",
    ),
    option(
        "--max-message-size",
        env="HOPLINE_MAX_MESSAGE_SIZE",
        default=_GATEWAY_DEFAULTS.max_message_size,
        type=click.IntRange(min=1),
        help="Largest client frame in bytes; larger ones close the socket with 1009.",
    ),
    option(
        "--compression",
        env="HOPLINE_COMPRESSION",
        default=_GATEWAY_DEFAULTS.compression,
        type=click.Choice(["deflate", "none"]),
        help="permessage-deflate for clients that offer it (about 45 KiB per socket "
        "instead of 20); none saves memory and CPU on small messages.",
    ),
    option(
        "--persistent/--transient",
        env="HOPLINE_PERSISTENT",
        default=_GATEWAY_DEFAULTS.persistent,
        help="Publish requests as persistent messages.",
    ),
    option(
        "--management-url",
        env="HOPLINE_MANAGEMENT_URL",
        default=None,
        help="RabbitMQ management API base URL, for unacked counts in /stats.",
    ),
    option(
        "--workers",
        env="HOPLINE_WORKERS",
        default=1,
        type=click.IntRange(min=1),
        help="Gateway processes sharing the port (SO_REUSEPORT; the kernel spreads "
        "connections); /health, /metrics and /stats are per worker.",
    ),
    option(
        "--drain-timeout",
        env="HOPLINE_DRAIN_TIMEOUT",
        default=_GATEWAY_DEFAULTS.drain_timeout,
        type=click.FloatRange(min=0),
        help="Seconds to let in-flight requests finish on shutdown.",
    ),
    # Limits and admission (gateway/security.py)
    option(
        "--max-connections",
        env="HOPLINE_MAX_CONNECTIONS",
        default=_GATEWAY_DEFAULTS.max_connections,
        type=click.IntRange(min=0),
        help="Most open /ws sockets plus /stream requests; more get HTTP 503 (0 = no limit).",
    ),
    option(
        "--handshake-timeout",
        env="HOPLINE_HANDSHAKE_TIMEOUT",
        default=_GATEWAY_DEFAULTS.handshake_timeout,
        type=click.FloatRange(min=0.001),
        help="Seconds a new connection may take to send its HTTP request.",
    ),
    option(
        "--rate-limit",
        env="HOPLINE_RATE_LIMIT",
        default=_GATEWAY_DEFAULTS.rate_limit,
        type=click.FloatRange(min=0),
        help="Requests per second per socket (token bucket); excess gets 'busy' (0 = off).",
    ),
    option(
        "--rate-burst",
        env="HOPLINE_RATE_BURST",
        default=_GATEWAY_DEFAULTS.rate_burst,
        type=click.IntRange(min=0),
        help="Token bucket size: requests one socket may send in a burst (0 = max(1, rate)).",
    ),
    option(
        "--send-timeout",
        env="HOPLINE_GATEWAY_SEND_TIMEOUT",  # HOPLINE_SEND_TIMEOUT is `hopline send --timeout`
        default=_GATEWAY_DEFAULTS.send_timeout,
        type=click.FloatRange(min=0.001),
        help="Seconds a reply may wait on a client that stops reading before it is dropped.",
    ),
    option(
        "--allowed-origin",
        "allowed_origins",
        env="HOPLINE_ALLOWED_ORIGINS",
        multiple=True,
        default=(),
        show_default=False,
        help="Origin allowed to connect (repeatable; env: comma/space separated); "
        "others get 403. Default: any. Requests without Origin are allowed.",
    ),
    option(
        "--token-secret",
        env="HOPLINE_TOKEN_SECRET",
        default=None,
        show_default=False,
        callback=_check_secret,
        help="HS256 secret (32+ bytes): require a JWT (Authorization: Bearer, or subprotocol "
        "hopline.token.<jwt>) on /ws and /stream. Default: no authentication.",
    ),
)

processor_options = _compose(
    option(
        "--handler",
        env="HOPLINE_HANDLER",
        default="world",
        help="Built-in handler (world, echo, upper; words streams one word per "
        "HOPLINE_WORDS_DELAY s) or module:function. Plain functions run in a thread pool, "
        "async ones on the event loop, generators stream; an optional 2nd parameter gets a "
        "Context; raise hopline.handler.BadRequest to refuse; module-level startup()/"
        "shutdown() run once. See docs/handlers.md.",
    ),
    option(
        "--prefetch",
        env="HOPLINE_PREFETCH",
        default=_PROCESSOR_DEFAULTS.prefetch,
        type=click.IntRange(min=1),
        help="AMQP prefetch: messages delivered but not acked.",
    ),
    option(
        "--concurrency",
        env="HOPLINE_CONCURRENCY",
        default=None,
        type=click.IntRange(min=1),
        help="Handler calls at once, and threads for plain-function handlers [default: prefetch].",
    ),
    option(
        "--prefetch-bytes",
        env="HOPLINE_PREFETCH_BYTES",
        default=_PROCESSOR_DEFAULTS.prefetch_bytes,
        type=click.IntRange(min=0),
        help="Stop taking deliveries while unacked ones hold this many bytes (0: no bound).",
    ),
)


def _topology(kw: dict[str, Any]) -> QueueTopology:
    return QueueTopology(
        input_queue=kw["input_queue"],
        queue_type=kw["queue_type"],
        max_length=kw["max_queue_length"],
        max_bytes=kw["max_queue_bytes"],
        delivery_limit=kw["delivery_limit"],
    )


def gateway_settings(kw: dict[str, Any]) -> GatewaySettings:
    """Build gateway settings from the parsed options."""
    return GatewaySettings(
        rabbitmq_url=kw["rabbitmq_url"],
        host=kw["host"],
        port=kw["port"],
        topology=_topology(kw),
        request_timeout=kw["request_timeout"],
        window=kw["window"],
        batching=kw["batching"],
        max_batch=kw["max_batch"],
        max_batch_bytes=kw["max_batch_bytes"],
        max_pending=kw["max_pending"],
        max_pending_bytes=kw["max_pending_bytes"],
        max_message_size=kw["max_message_size"],
        compression=kw["compression"],
        persistent=kw["persistent"],
        management_url=kw["management_url"],
        drain_timeout=kw["drain_timeout"],
        max_connections=kw["max_connections"],
        handshake_timeout=kw["handshake_timeout"],
        rate_limit=kw["rate_limit"],
        rate_burst=kw["rate_burst"],
        send_timeout=kw["send_timeout"],
        allowed_origins=parse_origins(kw["allowed_origins"]),
        token_secret=kw["token_secret"] or None,
    )


def processor_settings(kw: dict[str, Any]) -> ProcessorSettings:
    """Build processor settings from the parsed options."""
    return ProcessorSettings(
        rabbitmq_url=kw["rabbitmq_url"],
        topology=_topology(kw),
        prefetch=kw["prefetch"],
        concurrency=kw["concurrency"],
        prefetch_bytes=kw["prefetch_bytes"],
    )
