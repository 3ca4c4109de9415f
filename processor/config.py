"""Processor settings: one frozen dataclass; each field with a setting is also an option.

Light on purpose (no aio-pika): the command builds its options from it at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import click

from hopline.settings import setting
from hopline.settings.common import RABBITMQ_ORDER, RABBITMQ_URL, TOPOLOGY
from hopline.wire.amqp import QueueTopology

__all__ = ["ProcessorSettings"]


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    """Everything a processor needs.

    Attributes:
        rabbitmq_url: AMQP URL of the broker, or a comma-separated list of the nodes
            of a cluster.
        rabbitmq_order: try the addresses in ``shuffle``d or ``listed`` order.
        connect_attempt_timeout: seconds one address may take to connect and set up.
        topology: the input queues (same arguments as the gateway's).
        handler: the handler's name (built-in or ``module:function``); the
            :class:`~processor.worker.Processor` is given the loaded function.
        prefetch: AMQP prefetch count (messages delivered but not yet acked).
        concurrency: handler calls at once, and threads for plain handlers (defaults
            to ``prefetch``).
        prefetch_bytes: pause consuming while unacked deliveries hold this many
            bytes (0: no bound); see :mod:`processor.flow`.
    """

    rabbitmq_url: str = RABBITMQ_URL.field()
    rabbitmq_order: Literal["shuffle", "listed"] = RABBITMQ_ORDER.field()
    topology: QueueTopology = TOPOLOGY.field()
    handler: str = setting(
        "world",
        "Built-in handler (world, echo, upper; words streams one word per "
        "HOPLINE_WORDS_DELAY s) or module:function. Plain functions run in a thread pool, "
        "async ones on the event loop, generators stream; an optional 2nd parameter gets a "
        "Context; raise hopline.handler.BadRequest to refuse; module-level startup()/"
        "shutdown() run once. See docs/handlers.md.",
    )
    prefetch: int = setting(
        64, "AMQP prefetch: messages delivered but not acked.", type=click.IntRange(min=1)
    )
    concurrency: int | None = setting(
        None,
        "Handler calls at once, and threads for plain-function handlers.",
        type=click.IntRange(min=1),
        show_default="prefetch",
    )
    prefetch_bytes: int = setting(
        32 * 2**20,
        "Stop taking deliveries while unacked ones hold this many bytes (0: no bound).",
        type=click.IntRange(min=0),
    )
    connect_attempt_timeout: float = 3.0
