"""Exit codes shared by every subcommand, and the one-line error they print."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

__all__ = ["FAILED", "OK", "STARTUP_FAILURE", "USAGE", "fail"]

OK = 0
FAILED = 1  # the run completed but did not succeed (error reply, threshold missed)
USAGE = 2  # bad options or arguments (click's own code)
STARTUP_FAILURE = 3  # could not start: broker or gateway unreachable, port taken
NO_CONNECTION = 4  # load test: not a single connection could be made


def fail(message: str, code: int) -> NoReturn:
    """Print ``hopline: error: <message>`` as one line on stderr and exit with ``code``."""
    click.echo(f"hopline: error: {message}", err=True)
    sys.exit(code)
