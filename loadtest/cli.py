"""``hopline loadtest``: parse options, run, report, check SLOs. The work lives in the modules."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from hopline.options import option, token_option
from loadtest.slo import SLO, SLOError, parse_duration, parse_slo

__all__ = ["loadtest"]

# --smoke: a short closed-loop scenario for CI; explicit options still win.
SMOKE = {
    "connections": 20,
    "duration": 5.0,
    "ramp_up": 0.0,
    "in_flight": 1,
    "procs": 1,
    "timeout": 5.0,
}


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@option("--url", env="HOPLINE_URL", default="ws://localhost:8000/ws", help="WebSocket endpoint.")
@token_option
@option(
    "--protocol",
    env="HOPLINE_LOADTEST_PROTOCOL",
    default="hopline.v1",
    type=click.Choice(["hopline.v1", "plain"]),
    help="hopline.v1 matches replies by id; plain matches them in order.",
)
@option(
    "-c",
    "--connections",
    env="HOPLINE_LOADTEST_CONNECTIONS",
    default=10,
    type=click.IntRange(min=1),
    help="Concurrent WebSocket connections.",
)
@option(
    "--ramp-up",
    env="HOPLINE_LOADTEST_RAMP_UP",
    default="0s",
    type=DURATION,
    help="Spread connection attempts over this time; the load starts after it.",
)
@option(
    "-d",
    "--duration",
    env="HOPLINE_LOADTEST_DURATION",
    default="10s",
    type=DURATION,
    help="Time under load, after the ramp-up (with --requests alone: no limit).",
)
@option(
    "-n",
    "--requests",
    env="HOPLINE_LOADTEST_REQUESTS",
    default=None,
    type=click.IntRange(min=1),
    help="Stop after this many requests in total.",
)
@option(
    "-r",
    "--rate",
    env="HOPLINE_LOADTEST_RATE",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Open model: requests/s in total on a fixed schedule; latency from scheduled time.",
)
@option(
    "--in-flight",
    env="HOPLINE_LOADTEST_IN_FLIGHT",
    default=1,
    type=click.IntRange(min=1),
    help="Closed model: requests each connection keeps outstanding.",
)
@option(
    "--think",
    env="HOPLINE_LOADTEST_THINK",
    default="0s",
    type=DURATION,
    help="Closed model: pause between a reply and the next request.",
)
@option(
    "--timeout",
    env="HOPLINE_LOADTEST_TIMEOUT",
    default="10s",
    type=DURATION,
    help="A request without a reply after this counts as a timeout.",
)
@option(
    "--connect-timeout",
    env="HOPLINE_LOADTEST_CONNECT_TIMEOUT",
    default="10s",
    type=DURATION,
    help="Time for TCP connect plus WebSocket handshake.",
)
@option(
    "--message",
    env="HOPLINE_LOADTEST_MESSAGE",
    default="hello {n}",
    help="Request data; {n} becomes the request's number on its connection.",
)
@option(
    "--expect",
    env="HOPLINE_LOADTEST_EXPECT",
    default="world",
    type=click.Choice(["world", "echo", "none"]),
    help="Reply check: data + ' world', data unchanged, or anything but an error.",
)
@option(
    "--procs",
    env="HOPLINE_LOADTEST_PROCS",
    default=None,
    show_default="CPU count",
    type=click.IntRange(min=1),
    help="Worker processes sharing the connections (histograms merged exactly).",
)
@option(
    "--slo",
    "slos",
    env="HOPLINE_LOADTEST_SLO",
    multiple=True,
    callback=_parse_slos,
    help="Threshold, repeatable: p50|p90|p99|p999|max|mean<50ms, errors==0, "
    "timeouts<1%, rate>=1000. A miss exits 1.",
)
@option(
    "--json",
    "json_path",
    env="HOPLINE_LOADTEST_JSON",
    default=None,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the JSON report here ('-' for stdout instead of the table).",
)
@option(
    "--ledger",
    env="HOPLINE_LOADTEST_LEDGER",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write one line per request (CSV if the name ends in .csv, else JSON Lines).",
)
@option(
    "--smoke",
    env="HOPLINE_LOADTEST_SMOKE",
    is_flag=True,
    default=False,
    help="Short CI scenario: 20 connections, closed loop, 5 s, 1 process (options override).",
)
@option(
    "-q",
    "--quiet",
    env="HOPLINE_LOADTEST_QUIET",
    is_flag=True,
    default=False,
    help="No progress display, only the report.",
)
@click.pass_context
def loadtest(ctx: click.Context, **kw: Any) -> None:
    """Drive load at a WebSocket endpoint and report throughput and honest latency.

    Closed model by default (each connection keeps --in-flight requests
    outstanding); --rate switches to the open model, where each request is timed
    from when it was scheduled, so a stall shows in the percentiles.

    Exit codes: 0 ok, 1 an --slo was missed, 2 usage error, 4 no connection
    could be made, 130 stopped early by Ctrl-C (report still written).
    """
    from loadtest.main import execute, settings_from_options

    if kw["smoke"]:
        for name, value in SMOKE.items():
            if ctx.get_parameter_source(name) is ParameterSource.DEFAULT:
                kw[name] = value
    if kw["procs"] is None:
        kw["procs"] = os.cpu_count() or 1
    explicit = {
        name for name in kw if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
    }
    try:
        settings = settings_from_options(kw, explicit)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None
    code = execute(settings, kw["slos"], kw["json_path"], quiet=kw["quiet"])
    sys.exit(code)
