"""From parsed options to an exit code: settings, run with progress, report, SLO check."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from hopline import runtime
from hopline.client.errors import InvalidURL
from hopline.client.handshake import validate_url
from hopline.settings import build
from loadtest.config import LoadSettings
from loadtest.progress import Mode, Progress
from loadtest.report import build_report, render, slo_metrics, write_json
from loadtest.runner import RunError, run
from loadtest.slo import SLO, check

__all__ = ["execute", "settings_from_options"]


def settings_from_options(kw: Mapping[str, Any], explicit: set[str]) -> LoadSettings:
    """Build the settings from CLI options (``explicit``: options the user gave).

    Raises:
        ValueError: contradictory options, or an output path that cannot be written
            (checked now, so a long run is not lost at the end).
    """
    try:
        validate_url(kw["url"])
    except InvalidURL as exc:
        raise ValueError(f"--url: {exc}") from None
    rate = kw["rate"]
    if rate and explicit & {"in_flight", "think"}:
        raise ValueError("--in-flight and --think belong to the closed model; --rate selects open")
    duration = kw["duration"]
    if kw["requests"] is not None and "duration" not in explicit:
        duration = None
    if duration is not None and duration <= 0:
        raise ValueError("--duration must be more than 0")
    if kw["timeout"] <= 0 or kw["connect_timeout"] <= 0:
        raise ValueError("--timeout and --connect-timeout must be more than 0")
    for name in ("json_path", "ledger"):
        path = kw.get(name)
        if path and path != "-":
            _check_writable(path, "--json" if name == "json_path" else "--ledger")
    return build(
        LoadSettings, kw, procs=min(kw["procs"], kw["connections"]), rate=rate, duration=duration
    )


def _check_writable(path: str, flag: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{flag} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"{flag} {path}: not writable")


def execute(settings: LoadSettings, slos: list[SLO], json_path: str | None, *, quiet: bool) -> int:
    """Run, show progress, print the report, write JSON; return the exit code.

    0: ran and every SLO held; 1: an SLO was missed; 4: no connection could be
    made (the JSON report is still written); 130: stopped early by Ctrl-C.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    mode: Mode = "quiet" if quiet else ("live" if err.is_terminal else "plain")
    try:
        with Progress(settings, mode, err) as progress:
            result = run(settings, progress.update)
    except RunError as exc:
        runtime.fail(str(exc), runtime.STARTUP_FAILURE)
    results = check(slos, slo_metrics(result))
    missed = [r for r in results if not r.passed]
    code = runtime.FAILED if missed else (runtime.INTERRUPTED if result.interrupted else runtime.OK)
    if not result.connected:
        code = runtime.NO_CONNECTION
    report = build_report(result, results, code)
    if json_path:
        write_json(json_path, report)
    if json_path != "-":
        out = Console(file=sys.stdout, highlight=False)
        if not out.is_terminal:
            out.width = max(out.width, 120)
        render(report, out)
    if not result.connected:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(result.connect_failures.items()))
        runtime.fail(f"no connection could be made to {settings.url} ({reasons})", code)
    for r in missed:
        Console(stderr=True, highlight=False).print(
            f"hopline: SLO missed: {r.slo.text}: {r.describe()}", markup=False
        )
    return code
