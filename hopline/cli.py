"""The ``hopline`` command. It parses options and hands off; the work lives in the packages."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import sys
from typing import Any

import click

from gateway.config import GatewaySettings
from hopline import runtime
from hopline.settings import build, click_options
from hopline.settings.commands import MainOptions, SendOptions, TokenOptions, UpOptions
from processor.config import ProcessorSettings

__all__ = ["main"]


# Subcommands whose imports are heavy (Textual, hdrhistogram) load on first use.
LAZY_COMMANDS = {"tui": "tui.cli:tui", "loadtest": "loadtest.cli:loadtest"}


class _LazyGroup(click.Group):
    """Subcommands loaded on first use; every error a user causes is one line on stderr.

    Click prints a usage error as several lines (usage, hint, blank, error) and Ctrl-C
    as ``Aborted!`` with exit 1; here a usage error is ``hopline: error: ...`` with
    exit 2, Ctrl-C is ``hopline: interrupted`` with exit 130 (:func:`runtime.interrupted`,
    which the commands also end with after SIGINT), and an unexpected exception is one
    line with exit 1 (its traceback with ``-vv``).
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except (KeyboardInterrupt, click.Abort, EOFError):
            runtime.interrupted()
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "hopline"
            runtime.fail(
                f"{_one_line(exc.format_message())} (see '{command} --help')", exc.exit_code
            )
        except click.ClickException as exc:
            runtime.fail(_one_line(exc.format_message()), exc.exit_code)
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            runtime.fail(
                f"unexpected {type(exc).__name__}: {_one_line(str(exc))} "
                "(run with -vv for the traceback)",
                runtime.FAILED,
            )
        sys.exit(result if isinstance(result, int) else runtime.OK)

    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name, target in LAZY_COMMANDS.items() if _importable(target)]
        return sorted([*super().list_commands(ctx), *available])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and _importable(LAZY_COMMANDS[name]):
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _importable(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:
        return False


# Libraries whose log lines mean nothing to a user unless asked for (-v): aiormq logs an
# ERROR for a refused connection that hopline then reports itself in one line, and a
# WARNING for channels closed during a clean SIGTERM shutdown.
LIBRARY_LOGGERS = ("aio_pika", "aiormq", "asyncio", "websockets")


def configure_logging(verbose: int) -> None:
    """One log format for every subcommand.

    No flag: hopline's own warnings only, no library lines; ``-v``: info, and library
    warnings; ``-vv``: debug everywhere (and tracebacks of unexpected errors).
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    library_level = (logging.CRITICAL + 1, logging.WARNING, logging.DEBUG)[min(verbose, 2)]
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)


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
    preflight(settings.rabbitmq_url, settings.host, settings.port)
    if settings.workers > 1:
        _gateway_workers(settings, settings.workers)
        return
    gw = Gateway(settings)

    def started() -> None:
        click.echo(f"hopline gateway listening on ws://{settings.host}:{gw.port}/ws", err=True)

    try:
        received = run(run_until_signalled(gw.start, gw.stop, started))
    except BrokerUnavailable as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
    except OSError as exc:
        runtime.fail(
            runtime.listen_error(settings.host, settings.port, exc), runtime.STARTUP_FAILURE
        )
    _exit_for(received)


def preflight(urls: str, host: str | None = None, port: int | None = None) -> None:
    """Exit 3 within seconds when no AMQP broker answers or the port is taken.

    Runs before anything connects or declares queues (see :mod:`hopline.preflight`).
    """
    from hopline.preflight import broker_problem, port_problem

    if host is not None and port is not None:
        error = port_problem(host, port)
        if error is not None:
            runtime.fail(runtime.listen_error(host, port, error), runtime.STARTUP_FAILURE)
    problem = broker_problem(urls)
    if problem is not None:
        runtime.fail(problem, runtime.STARTUP_FAILURE)


def _exit_for(received: signal.Signals) -> None:
    """Ctrl-C (SIGINT) ends a service with 130, as the shell expects; SIGTERM with 0."""
    if received == signal.SIGINT:
        runtime.interrupted()


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
            runtime.listen_error(settings.host, settings.port, exc), runtime.STARTUP_FAILURE
        )
    runtime.exit_with(code)


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
    from processor.handlers import StartupError, load_hooks
    from processor.worker import READY_LINE, Processor

    settings = build(ProcessorSettings, kw)
    handler_fn = _load_handler(settings.handler)
    preflight(settings.rabbitmq_url)
    worker = Processor(settings, handler_fn, load_hooks(settings.handler))

    def started() -> None:
        click.echo(
            f"{READY_LINE}: consuming {settings.topology.input_queue} "
            f"(handler {settings.handler}, prefetch {settings.prefetch})",
            err=True,
        )

    try:
        received = run(run_until_signalled(worker.start, worker.stop, started))
    except (BrokerUnavailable, StartupError) as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
    if worker.caller.abandoned_running:
        # Blocking calls given up at their deadline still run in pool threads, which the
        # interpreter would wait for at exit (up to the handler's full time): skip that.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        if received == signal.SIGINT:
            runtime.interrupted_now()
        os._exit(runtime.OK)
    _exit_for(received)


def _load_handler(spec: str) -> Any:
    """The handler ``spec`` names, or a usage error (exit 2) saying why not."""
    from processor.handlers import HandlerError, load_handler

    try:
        return load_handler(spec)
    except HandlerError as exc:
        raise click.BadParameter(str(exc), param_hint="--handler") from None


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
        runtime.interrupted()
    if failed:
        sys.exit(runtime.FAILED)


@main.command()
@click_options(TokenOptions)
def token(token_secret: str, ttl: float | None, subject: str | None, purpose: str) -> None:
    """Print a token (JWT) that a gateway started with the same --token-secret accepts."""
    import time

    if not token_secret:
        raise click.UsageError("Missing option '--token-secret' (or HOPLINE_TOKEN_SECRET).")

    from gateway.security import mint_token  # the secret was checked by its option
    from gateway.stream_token import mint_stream_token

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
@click.pass_context
def up(ctx: click.Context, **kw: Any) -> None:
    """Run the whole stack: gateway + processor(s), and a private broker if needed.

    Exit code 2 for a handler that cannot be loaded, 3 when the broker, the port or a
    processor fails at start-up, 0 after SIGTERM, 130 after Ctrl-C.
    """
    settings = build(GatewaySettings, kw)
    _load_handler(kw["handler"])  # a bad handler stops everything before it starts
    from hopline.up import UpError, run_stack

    kw["verbose"] = ctx.find_root().obj["verbose"]
    try:
        code = run_stack(settings, kw)
    except UpError as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
    runtime.exit_with(code)
