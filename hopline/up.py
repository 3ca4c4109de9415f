"""``hopline up``: gateway in this process, processors as child processes, broker if needed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click
from yarl import URL

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.broker_node import PrivateBroker, port_answers, rabbitmq_server_path
from hopline.runtime import run, run_until_signalled
from hopline.wire.connect import BrokerUnavailable, redact_url

__all__ = ["UpError", "run_stack"]

NO_BROKER_HINT = (
    "install RabbitMQ (e.g. 'apt-get install rabbitmq-server') or start one with "
    "'docker compose up -d rabbitmq', then set RABBITMQ_URL"
)


class UpError(RuntimeError):
    """The stack could not start; the message is one line for the user."""


def broker_answers(url: str) -> bool:
    """Whether the host and port of an AMQP URL accept TCP connections."""
    parsed = URL(url)
    return port_answers(parsed.host or "localhost", parsed.port or 5672)


def processor_argv(kw: dict[str, Any], rabbitmq_url: str) -> list[str]:
    """The command line of one processor child, carrying the options ``up`` was given."""
    argv = [sys.executable, "-m", "hopline"]
    argv += ["-v"] * kw.get("verbose", 0)
    argv += [
        "processor",
        "--rabbitmq-url",
        rabbitmq_url,
        "--handler",
        kw["handler"],
        "--prefetch",
        str(kw["prefetch"]),
        "--input-queue",
        kw["input_queue"],
        "--queue-type",
        kw["queue_type"],
    ]
    for name in (
        "concurrency",
        "prefetch_bytes",
        "max_queue_length",
        "max_queue_bytes",
        "delivery_limit",
    ):
        if kw.get(name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(kw[name])]
    return argv


def run_stack(settings: GatewaySettings, kw: dict[str, Any]) -> None:
    """Start everything, print the URLs, run until SIGINT/SIGTERM, stop everything.

    Raises:
        UpError: no broker could be reached or started, or the gateway could not listen.
    """
    private: PrivateBroker | None = None
    if not broker_answers(settings.rabbitmq_url):
        where = redact_url(settings.rabbitmq_url)
        if not kw["private_broker"] or rabbitmq_server_path() is None:
            raise UpError(f"no RabbitMQ answers at {where}; {NO_BROKER_HINT}")
        click.echo(f"RabbitMQ at {where} does not answer; starting a private node...", err=True)
        private = PrivateBroker()
        try:
            private.start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            private.cleanup()
            raise UpError(f"could not start a private RabbitMQ node: {exc}") from None
        settings = dataclasses.replace(settings, rabbitmq_url=private.url)
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(kw["processors"]):
            children.append(subprocess.Popen(processor_argv(kw, settings.rabbitmq_url)))
        _run_gateway(settings, kw["processors"], private, kw.get("workers", 1))
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.drain_timeout + 5
        for child in children:
            try:
                child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if private is not None:
            private.cleanup()


def _run_gateway(
    settings: GatewaySettings, processors: int, private: PrivateBroker | None, workers: int
) -> None:
    def banner(port: int) -> None:
        host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
        base = f"{host}:{port}"
        lines = [
            "hopline is up",
            f"  websocket   ws://{base}/ws",
            f"  stream      http://{base}/stream/hello",
            f"  health      http://{base}/health",
            f"  metrics     http://{base}/metrics",
            f"  stats       http://{base}/stats",
            f"  broker      {redact_url(settings.rabbitmq_url)}"
            + (" (private node, stopped on exit)" if private else ""),
            f"  processors  {processors}",
            *([f"  workers     {workers} gateway processes on port {port}"] if workers > 1 else []),
            "Ctrl-C stops everything.",
        ]
        click.echo("\n".join(lines))

    async def after_start(gw: Gateway) -> None:
        await _wait_for_consumers(gw, processors, timeout=30.0)

    if workers > 1:
        _run_workers(settings, workers, banner, after_start)
        return
    gw = Gateway(settings)

    async def start() -> None:
        await gw.start()
        await after_start(gw)

    try:
        run(run_until_signalled(start, gw.stop, lambda: banner(gw.port)))
    except BrokerUnavailable as exc:
        raise UpError(str(exc)) from None
    except OSError as exc:
        raise UpError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None


def _run_workers(
    settings: GatewaySettings,
    workers: int,
    banner: Callable[[int], None],
    after_start: Callable[[Gateway], Awaitable[None]],
) -> None:
    """``--workers N``: the gateway as N processes (see :mod:`hopline.workers`)."""
    from hopline.workers import WorkerStartError, serve_workers

    try:
        code = serve_workers(settings, workers, banner, after_start)
    except WorkerStartError as exc:
        raise UpError(str(exc)) from None
    except OSError as exc:
        raise UpError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    if code != 0:  # a worker died while serving (1) or was forced to exit (130)
        sys.exit(code)  # run_stack's cleanup still stops the processors and the broker


async def _wait_for_consumers(gw: Gateway, processors: int, timeout: float) -> None:
    """Wait until ``processors`` consumers are on the batch queue (so ``up`` prints when ready)."""
    if processors == 0:
        return
    batch_queue = gw.settings.topology.batch_queue
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await gw.broker.sample_queues()
        sample = gw.broker.queues.get(batch_queue)
        if sample is not None and sample.consumers >= processors:
            return
        await asyncio.sleep(0.1)
    click.echo(
        f"warning: fewer than {processors} processors are consuming after {timeout:g} s", err=True
    )
