"""The ``hopline`` command. It parses options and hands off; the work lives in the packages."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from typing import Any

import click

from gateway.config import TOKEN_SECRET, GatewaySettings
from hopline import runtime
from hopline.settings import build, click_options, setting
from hopline.settings.common import TOKEN, URL
from processor.config import ProcessorSettings

__all__ = ["main"]


# Options of the command itself (the components' settings live in their config modules).


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


# Subcommands whose imports are heavy (Textual, hdrhistogram) load on first use.
LAZY_COMMANDS = {"tui": "tui.cli:tui", "loadtest": "loadtest.cli:loadtest"}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name, target in LAZY_COMMANDS.items() if _importable(target)]
        return sorted([*super().list_commands(ctx), *available])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and _importable(LAZY_COMMANDS[name]):
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


def _importable(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:
        return False


def configure_logging(verbose: int) -> None:
    """One log format for every subcommand; ``-v`` info, ``-vv`` debug."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose < 2:
        for noisy in ("aio_pika", "aiormq", "websockets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click_options(MainOptions)
@click.version_option(package_name="hopline")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """hopline: request/reply messaging over WebSockets and RabbitMQ.

    Exit codes: 0 ok, 1 failed (error reply, threshold missed), 2 usage error,
    3 could not start (broker or gateway unreachable), 4 no connection could be
    made (loadtest), 130 interrupted.
    """
    configure_logging(verbose)
    ctx.obj = {"verbose": verbose}


@main.command()
@click_options(GatewaySettings)
def gateway(**kw: Any) -> None:
    """Run the WebSocket gateway: /ws, /stream/<message>, /health, /metrics, /stats."""
    from gateway.server import Gateway
    from hopline.runtime import run, run_until_signalled
    from hopline.wire.connect import BrokerUnavailable

    settings = build(GatewaySettings, kw)
    if settings.workers > 1:
        _gateway_workers(settings, settings.workers)
        return
    gw = Gateway(settings)

    def started() -> None:
        click.echo(f"hopline gateway listening on ws://{settings.host}:{gw.port}/ws", err=True)

    try:
        run(run_until_signalled(gw.start, gw.stop, started))
    except BrokerUnavailable as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
    except OSError as exc:
        runtime.fail(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
            runtime.STARTUP_FAILURE,
        )


def _gateway_workers(settings: Any, workers: int) -> None:
    """``hopline gateway --workers N``: see :mod:`hopline.workers`."""
    from hopline.workers import WorkerStartError, serve_workers

    def ready(port: int) -> None:
        click.echo(
            f"hopline gateway listening on ws://{settings.host}:{port}/ws ({workers} workers)",
            err=True,
        )

    try:
        code = serve_workers(settings, workers, ready)
    except WorkerStartError as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
    except OSError as exc:
        runtime.fail(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
            runtime.STARTUP_FAILURE,
        )
    sys.exit(code)


@main.command()
@click_options(ProcessorSettings)
def processor(**kw: Any) -> None:
    """Run a processor: consume requests, apply the handler, reply.

    A handler takes the request (str or bytes) and returns or yields the reply; see
    --handler and docs/handlers.md. Exit code 3 when the broker is unreachable or the
    handler module's startup() raised.
    """
    from hopline.runtime import run, run_until_signalled
    from hopline.wire.connect import BrokerUnavailable
    from processor.handlers import HandlerError, StartupError, load_handler, load_hooks
    from processor.worker import Processor

    settings = build(ProcessorSettings, kw)
    try:
        handler_fn = load_handler(settings.handler)
    except HandlerError as exc:
        raise click.BadParameter(str(exc), param_hint="--handler") from None
    worker = Processor(settings, handler_fn, load_hooks(settings.handler))
    try:
        run(run_until_signalled(worker.start, worker.stop))
    except (BrokerUnavailable, StartupError) as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)


@main.command()
@click.argument("messages", nargs=-1, required=True)
@click_options(SendOptions)
def send(messages: tuple[str, ...], url: str, timeout: float, token: str | None) -> None:
    """Send MESSAGES (all at once) and print each reply on its own line, in order.

    A message that failed prints one line on stderr in its place; exit code 1 if any
    failed, 3 if the gateway cannot be reached, 130 on Ctrl-C.
    """
    from hopline.client.errors import InvalidURL
    from hopline.send import SendError, send_messages

    try:
        failed = asyncio.run(send_messages(url, list(messages), timeout, token))
    except InvalidURL as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    except SendError as exc:
        runtime.fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        runtime.fail("interrupted", runtime.INTERRUPTED)
    if failed:
        sys.exit(runtime.FAILED)


@main.command()
@click_options(TokenOptions)
def token(token_secret: str, ttl: float | None, subject: str | None, purpose: str) -> None:
    """Print a token (JWT) that a gateway started with the same --token-secret accepts."""
    import time

    if not token_secret:
        raise click.UsageError("Missing option '--token-secret' (or HOPLINE_TOKEN_SECRET).")

    from gateway.security import check_secret, mint_token
    from gateway.stream_token import mint_stream_token

    try:
        check_secret(token_secret)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token-secret") from None
    claims = {"sub": subject} if subject else {}
    now = time.time()
    if purpose == "stream":
        try:
            click.echo(mint_stream_token(token_secret, ttl or 60.0, now, **claims))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ttl") from None
    else:
        click.echo(mint_token(token_secret, ttl or 3600.0, now, **claims))


@main.command()
@click_options(GatewaySettings, ProcessorSettings, UpOptions)
def up(**kw: Any) -> None:
    """Run the whole stack: gateway + processor(s), and a private broker if needed."""
    from hopline.up import UpError, run_stack

    try:
        run_stack(build(GatewaySettings, kw), kw)
    except UpError as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
