"""Settings more than one command declares: broker, queues, gateway URL, token, token secret.

Each is declared here once and used as a field by every settings class that needs it
(``rabbitmq_url: str = RABBITMQ_URL.field()``), so ``--rabbitmq-url`` means the same
thing, with the same default and variable, in ``gateway``, ``processor`` and ``up``.
"""

from __future__ import annotations

from typing import Any

import click

from hopline.client.errors import InvalidURL
from hopline.client.handshake import validate_url
from hopline.settings.spec import Group, Setting
from hopline.wire.addresses import parse_amqp_urls
from hopline.wire.amqp import QueueTopology
from hopline.wire.defaults import DEFAULT_INPUT_QUEUE, DEFAULT_RABBITMQ_URL, DEFAULT_WS_URL

__all__ = [
    "MIN_SECRET_BYTES",
    "RABBITMQ_ORDER",
    "RABBITMQ_URL",
    "TOKEN",
    "TOKEN_SECRET",
    "TOPOLOGY",
    "URL",
    "check_secret",
    "check_ws_url",
]

MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


def check_ws_url(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """Click callback: ``value`` must be a ``ws://`` or ``wss://`` URL with a host.

    The client's own check (:func:`hopline.client.handshake.validate_url`), so the
    usage error reads as the client library's error, hint included.
    """
    try:
        return validate_url(value)
    except InvalidURL as exc:
        raise click.BadParameter(str(exc)) from None


def check_secret(secret: str) -> None:
    """Raise ValueError unless ``secret`` is a usable HS256 key (32 bytes or more)."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes long")


def _check_secret(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            check_secret(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value or None


def _none_if_empty(value: Any) -> Any:
    return value or None


def check_amqp_urls(
    ctx: click.Context | None, param: click.Parameter | None, value: tuple[str, ...] | str
) -> str:
    """Click callback: every broker address must be an AMQP URL; one comma list comes out.

    A malformed one is a usage error (exit 2) before anything connects.
    """
    try:
        return ",".join(parse_amqp_urls(value or DEFAULT_RABBITMQ_URL))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


RABBITMQ_URL = Setting(
    DEFAULT_RABBITMQ_URL,
    "AMQP URL of RabbitMQ; repeat it (env: comma-separated) for the nodes of a cluster, "
    "tried in shuffled order on every (re)connect.",
    env="RABBITMQ_URL",
    multiple=True,
    callback=check_amqp_urls,
    cli_default=(DEFAULT_RABBITMQ_URL,),
    show_default=DEFAULT_RABBITMQ_URL,
)

RABBITMQ_ORDER = Setting(
    "shuffle",
    "Order to try the RabbitMQ addresses in: shuffle spreads clients over the nodes; "
    "listed prefers the first (e.g. the node on the same host).",
    type=click.Choice(["shuffle", "listed"]),
)

TOPOLOGY = Group(
    QueueTopology,
    {
        "input_queue": Setting(
            DEFAULT_INPUT_QUEUE,
            "Durable queue requests are published to (a name of your own on a shared broker).",
        ),
        "queue_type": Setting(
            "classic",
            "Input queue type; quorum for clustered brokers.",
            type=click.Choice(["classic", "quorum"]),
        ),
        "max_queue_length": Setting(
            None,
            "Broker-side input queue limit in requests; excess requests get 'busy'. "
            "The gateway then sends each request as its own message (no batching).",
            type=click.IntRange(min=1),
            attr="max_length",
        ),
        "max_queue_bytes": Setting(
            None,
            "Broker-side input queue limit in body bytes; excess requests get 'busy'.",
            type=click.IntRange(min=1),
            attr="max_bytes",
        ),
        "delivery_limit": Setting(
            None,
            "Deliveries before a request is dead-lettered to <queue>.dead.",
            type=click.IntRange(min=1),
        ),
    },
)

URL = Setting(DEFAULT_WS_URL, "Gateway WebSocket URL.", callback=check_ws_url)

TOKEN = Setting(
    None,
    "JWT for a gateway run with --token-secret (sent as 'Authorization: Bearer').",
    show_default=False,
    convert=_none_if_empty,
)

TOKEN_SECRET = Setting(
    None,
    "HS256 secret (32+ bytes) that signs tokens; a gateway given one requires a JWT "
    "(Authorization: Bearer, or subprotocol hopline.token.<jwt>) on /ws and /stream.",
    show_default=False,
    callback=_check_secret,
)
