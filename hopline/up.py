"""``hopline up``: processors as child processes, the gateway in this process, broker if needed.

Contract:

* The caller checks the options first (the handler is imported before anything starts:
  a bad one is a usage error, exit 2).
* Before anything starts, the gateway's port is checked (taken: :class:`UpError`,
  nothing declared on the broker) and so is the broker: ``RABBITMQ_URL`` is used when
  an AMQP broker answers there. When nothing listens at a *local* address
  (localhost, 127.0.0.0/8, ::1) and ``rabbitmq-server`` is installed, a private node
  is started on free ports (``--no-private-broker`` turns that off). Anything else (a
  remote address that does not answer, a host that does not resolve, a port that is
  not AMQP) is an :class:`UpError` within seconds.
* The processors start as ``python -m hopline processor`` children. Every processor
  setting reaches them in their environment, derived from the settings registry
  (:func:`processor_command`), so a new processor option needs no change here; and
  the broker URL stays off their command line, which ``ps`` shows to every user.
  Once each said it is consuming, the gateway starts, and then "hopline is up" is
  printed. A child that exits before is an :class:`UpError` carrying the child's own
  error line; one that exits later is reported on stderr.
* SIGTERM stops everything (exit 0), SIGINT too (exit 130, ``hopline: interrupted``
  once: the processors run in their own process group, so a terminal's Ctrl-C
  reaches only ``up``, which stops them with SIGTERM after the gateway drained). A
  second signal kills the children and the private node at once and removes the
  node's data directory; the node never outlives ``up`` unless ``up`` itself is
  SIGKILLed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from typing import Any

import click
from yarl import URL

from gateway.config import GatewaySettings
from gateway.server import Gateway
from hopline.broker_node import PrivateBroker, is_local_host, port_answers, rabbitmq_server_path
from hopline.children import ChildFailed, Children
from hopline.preflight import broker_problem, port_problem, split_urls
from hopline.runtime import (
    INTERRUPTED,
    OK,
    interrupted_now,
    listen_error,
    run,
    run_until_signalled,
)
from hopline.settings import build, environment
from hopline.wire.connect import BrokerUnavailable, redact_url
from processor.config import ProcessorSettings
from processor.worker import READY_LINE

__all__ = ["UpError", "run_stack"]

NO_BROKER_HINT = (
    "install RabbitMQ (e.g. 'apt-get install rabbitmq-server') or start one with "
    "'docker compose up -d rabbitmq', then set RABBITMQ_URL"
)
#: Seconds the processors have to connect and start consuming.
START_TIMEOUT = 30.0


class UpError(RuntimeError):
    """The stack could not start; the message is one line for the user."""


def processor_command(
    settings: ProcessorSettings, verbose: int = 0
) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment of one processor child.

    The command line is only ``python -m hopline [-v...] processor``; every setting
    of ``settings`` is in the environment, as :func:`hopline.settings.environment`
    derives it from the settings registry, so the child parses the same
    :class:`ProcessorSettings` (secrets included, out of ``ps``).
    """
    argv = [sys.executable, "-m", "hopline", *["-v"] * verbose, "processor"]
    return argv, environment(ProcessorSettings, settings)


def run_stack(settings: GatewaySettings, kw: dict[str, Any]) -> int:
    """Start everything, print the URLs, run until SIGINT/SIGTERM, stop everything.

    Returns the exit code: 0 after SIGTERM, 130 after SIGINT (or the workers' code).

    Raises:
        UpError: the port is taken, no broker could be reached or started, or a
            processor did not start.
    """
    processor = build(ProcessorSettings, kw)
    taken = port_problem(settings.host, settings.port)
    if taken is not None:
        raise UpError(listen_error(settings.host, settings.port, taken))
    with _Guard(Children(READY_LINE)) as guard:
        try:
            problem = broker_problem(settings.rabbitmq_url)
            if problem is not None:
                guard.private = _private_broker(
                    settings.rabbitmq_url, problem, kw["private_broker"], guard
                )
                settings = dataclasses.replace(settings, rabbitmq_url=guard.private.url)
            processor = dataclasses.replace(processor, rabbitmq_url=settings.rabbitmq_url)
            argv, env = processor_command(processor, kw.get("verbose", 0))
            children = guard.children
            try:
                children.start([list(argv) for _ in range(kw["processors"])], env)
                children.wait_ready(START_TIMEOUT)
            except ChildFailed as exc:
                raise UpError(f"processor {exc}") from None
            except TimeoutError:
                raise UpError(
                    f"the processors did not start consuming within {START_TIMEOUT:g} s"
                ) from None
            return _run_gateway(settings, kw, guard)
        except _Interrupted as exc:
            return INTERRUPTED if exc.signal == signal.SIGINT else OK
        finally:
            guard.cleaning = True  # from here on, a signal kills instead of interrupting
            guard.children.stop(settings.drain_timeout + 5)
            if guard.private is not None:
                # A throwaway node: nothing in it is kept, so no graceful stop (a node
                # interrupted while it boots can ignore SIGTERM for its whole 30 s timeout).
                guard.private.kill()
                guard.private.cleanup()


class _Interrupted(Exception):
    """SIGINT or SIGTERM arrived outside the event loop (start-up, private node)."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.signal = sig


class _Guard:
    """Signals while ``up`` runs outside the event loop.

    The first SIGINT/SIGTERM interrupts what is starting (:class:`_Interrupted`), and
    the clean-up runs; a signal during the clean-up, or a second one, kills the
    children and the private node at once, removes the node's data directory and
    exits with 130. So neither a second Ctrl-C nor a SIGTERM during start-up leaves
    the node behind.
    """

    def __init__(self, children: Children) -> None:
        self.children = children
        self.private: PrivateBroker | None = None
        self.cleaning = False
        self._signalled = False
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> _Guard:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        # Everything is stopped and removed: the command exits next, with the code already
        # decided. A late signal (the second Ctrl-C of an impatient user) is ignored: a
        # handler would turn it into a KeyboardInterrupt, or, once the interpreter's
        # finalization has put the default back, into death by SIGINT (-2, no exit code).
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)

    def install(self) -> None:
        """(Re)install the handlers: the event loop's own replace them while it runs."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, self._on_signal)
            self._previous.setdefault(sig, previous)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._signalled or self.cleaning:
            self.forced()
            interrupted_now()
        self._signalled = True
        raise _Interrupted(signal.Signals(signum))

    def forced(self) -> None:
        """Kill the children and the private node now, and remove the node's data."""
        self.children.kill()
        if self.private is not None:
            self.private.kill()
            self.private.cleanup()


def _nothing_listens_locally(urls: str) -> bool:
    """Whether every address is on this machine and nothing accepts connections there."""
    for url in split_urls(urls):
        try:
            parsed = URL(url)
            if not parsed.host or not is_local_host(parsed.host):
                return False
        except (ValueError, OSError):
            return False
        if port_answers(parsed.host, parsed.port or 5672):
            return False
    return True


def _private_broker(url: str, problem: str, allowed: bool, guard: _Guard) -> PrivateBroker:
    if not _nothing_listens_locally(url):
        raise UpError(problem)
    if not allowed or rabbitmq_server_path() is None:
        raise UpError(f"no RabbitMQ answers at {redact_url(url)}; {NO_BROKER_HINT}")
    click.echo(
        f"RabbitMQ at {redact_url(url)} does not answer; starting a private node...", err=True
    )
    guard.private = private = PrivateBroker()  # run_stack removes it, whatever happens
    try:
        private.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise UpError(f"could not start a private RabbitMQ node: {exc}") from None
    return private


def _banner(
    settings: GatewaySettings, port: int, processors: int, workers: int, private: bool
) -> None:
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
        f"  processors  {processors}"
        + ("" if processors else " (start some with 'hopline processor')"),
        *([f"  workers     {workers} gateway processes on port {port}"] if workers > 1 else []),
        *_crowded_hint(processors, workers),
        "Ctrl-C stops everything.",
    ]
    click.echo("\n".join(lines))


def _crowded_hint(processors: int, workers: int) -> list[str]:
    """A banner line when gateway workers and processors outnumber the cores.

    Measured on 2 cores (docs/performance.md, "What to expect"): there a second gateway
    process starves the processors every request passes through, and one process serves
    more.
    """
    cores = os.cpu_count() or 1
    if workers < 2 or workers + processors <= cores:
        return []
    return [
        f"  note        {workers} gateway processes and {processors} processors on {cores} "
        "cores: one gateway process may serve more (docs/performance.md)"
    ]


def _run_gateway(settings: GatewaySettings, kw: dict[str, Any], guard: _Guard) -> int:
    workers = kw.get("workers", 1) or 1
    processors = kw["processors"]
    children = guard.children

    def banner(port: int) -> None:
        _banner(settings, port, processors, workers, guard.private is not None)

    if workers > 1:
        from hopline.workers import WorkerStartError, serve_workers

        try:
            return serve_workers(settings, workers, banner)
        except WorkerStartError as exc:
            raise UpError(str(exc)) from None
        except OSError as exc:
            raise UpError(listen_error(settings.host, settings.port, exc)) from None

    gw = Gateway(settings)

    async def stop() -> None:
        await gw.stop()  # drain first: the processors still answer in-flight requests
        await asyncio.to_thread(children.stop, settings.drain_timeout + 5)

    try:
        received = run(run_until_signalled(gw.start, stop, lambda: banner(gw.port), guard.forced))
    except BrokerUnavailable as exc:
        raise UpError(str(exc)) from None
    except OSError as exc:
        raise UpError(listen_error(settings.host, settings.port, exc)) from None
    finally:
        guard.install()  # the loop's handlers are gone; ours cover the rest of the clean-up
    return INTERRUPTED if received == signal.SIGINT else OK
