"""Load-test settings: what to run (:class:`LoadSettings`) and what to do with the result.

Each field with a setting is also a ``hopline loadtest`` option and an environment
variable (see :mod:`hopline.settings`); this is the only place they are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import click

from hopline.settings import setting
from hopline.settings.common import TOKEN, URL
from loadtest.slo import SLO, SLOError, parse_duration, parse_slo

if TYPE_CHECKING:
    from loadtest.messages import Expect, Protocol

__all__ = ["DURATION", "LoadSettings", "RunOptions"]


class Duration(click.ParamType):
    """``10s``, ``500ms``, ``2m`` or a bare number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(value)
        except SLOError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def _parse_slos(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[SLO]:
    slos = []
    for text in values:
        try:
            slos.append(parse_slo(text))
        except SLOError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return slos


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """One load test, as the user asked for it.

    Attributes:
        url: ``ws://`` or ``wss://`` endpoint.
        protocol: ``hopline.v1`` (replies matched by id) or ``plain`` (in order).
        connections: sockets to open.
        procs: worker processes (capped at ``connections``).
        in_flight: closed model: requests each connection keeps outstanding.
        think: closed model: seconds between a reply and the next request.
        rate: open model when set: requests per second in total.
        duration: seconds of load after the ramp-up; ``None`` = until ``requests``.
        ramp_up: seconds over which connections are opened.
        requests: total request budget, ``None`` = until ``duration``.
        timeout: seconds a request may wait for its reply.
        connect_timeout: seconds for TCP connect + WebSocket handshake.
        message: request data; ``{n}`` becomes the request's sequence number.
        expect: reply check: ``world``, ``echo`` or ``none``.
        ledger: path of the per-request ledger, ``None`` for none.
        token: JWT sent as ``Authorization: Bearer`` (never written to reports).
    """

    url: str = URL.field()
    token: str | None = TOKEN.field(repr=False)
    protocol: Protocol = setting(
        "hopline.v1",
        "hopline.v1 matches replies by id; plain matches them in order.",
        type=click.Choice(["hopline.v1", "plain"]),
    )
    connections: int = setting(
        10, "Concurrent WebSocket connections.", type=click.IntRange(min=1), short="-c"
    )
    procs: int = setting(
        1,
        "Worker processes sharing the connections (histograms merged exactly).",
        type=click.IntRange(min=1),
        cli_default=None,
        show_default="CPU count",
    )
    ramp_up: float = setting(
        0.0,
        "Spread connection attempts over this time; the load starts after it.",
        type=DURATION,
    )
    duration: float | None = setting(
        10.0,
        "Time under load, after the ramp-up (with --requests alone: no limit).",
        type=DURATION,
        short="-d",
    )
    requests: int | None = setting(
        None, "Stop after this many requests in total.", type=click.IntRange(min=1), short="-n"
    )
    rate: float | None = setting(
        None,
        "Open model: requests/s in total on a fixed schedule; latency from scheduled time.",
        type=click.FloatRange(min=0, min_open=True),
        short="-r",
    )
    in_flight: int = setting(
        1, "Closed model: requests each connection keeps outstanding.", type=click.IntRange(min=1)
    )
    think: float = setting(
        0.0, "Closed model: pause between a reply and the next request.", type=DURATION
    )
    timeout: float = setting(
        10.0,
        "A request without a reply after this counts as a timeout.",
        type=DURATION,
        command="loadtest",
    )
    connect_timeout: float = setting(
        10.0, "Time for TCP connect plus WebSocket handshake.", type=DURATION, command="loadtest"
    )
    message: str = setting(
        "hello {n}", "Request data; {n} becomes the request's number on its connection."
    )
    expect: Expect = setting(
        "world",
        "Reply check: data + ' world', data unchanged, or anything but an error.",
        type=click.Choice(["world", "echo", "none"]),
    )
    ledger: str | None = setting(
        None,
        "Write one line per request (CSV if the name ends in .csv, else JSON Lines).",
        type=click.Path(dir_okay=False),
    )

    @property
    def model(self) -> Literal["open", "closed"]:
        return "open" if self.rate else "closed"

    @property
    def ledger_format(self) -> Literal["csv", "jsonl"]:
        return "csv" if self.ledger and self.ledger.lower().endswith(".csv") else "jsonl"

    def as_json(self) -> dict[str, Any]:
        """The settings as they appear in the JSON report."""
        return {
            "url": self.url,
            "protocol": self.protocol,
            "model": self.model,
            "connections": self.connections,
            "procs": self.procs,
            "in_flight": self.in_flight if self.model == "closed" else None,
            "think_s": self.think,
            "rate": self.rate,
            "duration_s": self.duration,
            "ramp_up_s": self.ramp_up,
            "requests": self.requests,
            "timeout_s": self.timeout,
            "connect_timeout_s": self.connect_timeout,
            "message": self.message,
            "expect": self.expect,
            "ledger": self.ledger,
            "token": self.token is not None,
        }


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``hopline loadtest`` does around the run.

    Attributes:
        slos: thresholds checked against the result; a miss exits 1.
        json_path: where the JSON report goes (``-`` for stdout), None for nowhere.
        smoke: the short CI scenario (see ``loadtest.cli.SMOKE``).
        quiet: no progress display, only the report.
    """

    slos: tuple[str, ...] = setting(
        (),
        "Threshold, repeatable: p50|p90|p99|p999|max|mean<50ms, errors==0, "
        "timeouts<1%, rate>=1000. A miss exits 1.",
        flag="--slo",
        multiple=True,
        callback=_parse_slos,
        show_default=False,
    )
    json_path: str | None = setting(
        None,
        "Write the JSON report here ('-' for stdout instead of the table).",
        flag="--json",
        type=click.Path(dir_okay=False, allow_dash=True),
    )
    smoke: bool = setting(
        False,
        "Short CI scenario: 20 connections, closed loop, 5 s, 1 process (options override).",
        is_flag=True,
    )
    quiet: bool = setting(False, "No progress display, only the report.", is_flag=True, short="-q")
