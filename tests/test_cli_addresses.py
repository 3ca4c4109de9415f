"""Broker address lists on the command line: repeated options, comma lists, bad URLs (exit 2)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hopline.cli import main


@pytest.mark.parametrize("command", ["gateway", "processor", "up"])
@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--rabbitmq-url", "garbage"], {}),
        (["--rabbitmq-url", "amqp://ok/", "--rabbitmq-url", "http://nope/"], {}),
        ([], {"RABBITMQ_URL": "amqp://ok/,amqp://h:99999/"}),
    ],
)
def test_a_malformed_address_is_a_usage_error(
    command: str, args: list[str], env: dict[str, str]
) -> None:
    """Refused before anything connects: exit 2, the reason on stderr, no traceback."""
    result = CliRunner().invoke(main, [command, *args], env=env)
    assert result.exit_code == 2, result.output
    assert "not an AMQP URL" in result.output
    assert "Traceback" not in result.output


def test_help_shows_the_address_list_and_its_variable() -> None:
    result = CliRunner().invoke(main, ["gateway", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "RABBITMQ_URL" in result.output and "HOPLINE_RABBITMQ_ORDER" in result.output
    assert "repeat it" in result.output
