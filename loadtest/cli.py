"""``hopline loadtest``: parse options, run, report, check SLOs. The work lives in the modules."""

from __future__ import annotations

import os
from typing import Any

import click
from click.core import ParameterSource

from hopline import runtime
from hopline.settings import click_options
from loadtest.config import LoadSettings, RunOptions

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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click_options(LoadSettings, RunOptions)
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
    runtime.exit_with(code)
