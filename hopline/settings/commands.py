"""Options of the ``hopline`` command itself: the group, ``send``, ``token`` and ``up``.

The components' settings live in their config modules (``gateway/config.py``,
``processor/config.py``, ``tui/config.py``, ``loadtest/config.py``); these are the few
options no component reads. Declared here, outside the command's modules, like all
the others (see :mod:`hopline.settings.spec`).
"""

from __future__ import annotations

from dataclasses import dataclass

import click

from hopline.settings.common import TOKEN, TOKEN_SECRET, URL
from hopline.settings.spec import setting

__all__ = ["MainOptions", "SendOptions", "TokenOptions", "UpOptions"]


@dataclass(frozen=True, slots=True)
class MainOptions:
    """Options of ``hopline`` before the subcommand."""

    verbose: int = setting(
        0, "More logging: -v info, -vv debug (with tracebacks).", short="-v", count=True
    )


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Options of ``hopline send``."""

    url: str = URL.field()
    timeout: float = setting(
        30.0,
        "Seconds to wait for all replies.",
        type=click.FloatRange(min=0.001),
        command="send",
    )
    token: str | None = TOKEN.field(repr=False)


@dataclass(frozen=True, slots=True)
class TokenOptions:
    """Options of ``hopline token``."""

    token_secret: str | None = TOKEN_SECRET.field(repr=False)
    ttl: float | None = setting(
        None,
        "Seconds until the token expires. Default: 3600; 60 with --purpose stream (max 300).",
        type=click.FloatRange(min=1),
        show_default=False,
    )
    subject: str | None = setting(None, "Optional 'sub' claim.", show_default=False)
    purpose: str = setting(
        "any",
        "'stream': a short-lived token that only /stream accepts, also in its URL "
        "(?token=, for EventSource).",
        type=click.Choice(["any", "stream"]),
    )


@dataclass(frozen=True, slots=True)
class UpOptions:
    """Options ``hopline up`` adds to the gateway's and the processor's."""

    processors: int = setting(2, "Processor processes to run.", type=click.IntRange(min=0))
    private_broker: bool = setting(
        True,
        "Start a private RabbitMQ node when RABBITMQ_URL does not answer.",
        off_flag="--no-private-broker",
    )
