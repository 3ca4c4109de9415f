"""The hopline command as a user runs it: send, errors, exit codes, --help."""

from __future__ import annotations

import asyncio
import os
import sys

import click
from click.testing import CliRunner

from hopline.broker_node import free_port
from hopline.cli import main
from hopline.settings import env_var
from hopline.settings.reference import commands
from tests.conftest import Stack, ws_url


async def run_hopline(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m hopline ARGS`` without blocking the event loop of the test."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hopline",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_prints_the_reply(stack: Stack) -> None:
    """hopline send hello prints hello world and exits 0."""
    gw = await stack.gateway()
    await stack.processor()
    code, out, err = await run_hopline("send", "--url", ws_url(gw), "hello")
    assert (code, out) == (0, "hello world\n"), err


async def test_send_several_messages_prints_replies_in_order(stack: Stack) -> None:
    """Several messages go out at once; replies print in argument order."""
    gw = await stack.gateway()
    await stack.processor("upper")
    code, out, _ = await run_hopline("send", "--url", ws_url(gw), "a", "b", "c")
    assert (code, out) == (0, "A\nB\nC\n")


async def test_send_error_reply_exits_1_with_one_line(stack: Stack) -> None:
    """An error reply is one line on stderr and exit code 1."""
    gw = await stack.gateway(request_timeout=0.3)
    code, out, err = await run_hopline("send", "--url", ws_url(gw), "hello")
    assert code == 1
    assert out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert "timeout" in err


async def test_send_to_nothing_exits_3() -> None:
    """No gateway listening: exit code 3 and a one-line error."""
    url = f"ws://127.0.0.1:{free_port()}/ws"
    code, _, err = await run_hopline("send", "--url", url, "hello")
    assert code == 3
    assert err.startswith("hopline: error: cannot connect")
    assert len(err.strip().splitlines()) == 1


async def test_gateway_with_unreachable_broker_exits_3() -> None:
    """The gateway cannot start without a broker: one clear line, exit 3, no traceback."""
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    code, _, err = await run_hopline("gateway", "--port", "0", env={"RABBITMQ_URL": url})
    assert code == 3
    assert "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1" in err
    assert "Traceback" not in err


async def test_up_without_any_broker_says_how_to_get_one() -> None:
    """hopline up with no broker and no private node allowed explains what to do."""
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    code, _, err = await run_hopline(
        "up", "--no-private-broker", "--port", "0", env={"RABBITMQ_URL": url}
    )
    assert code == 3
    assert "no RabbitMQ answers" in err
    assert "apt-get install rabbitmq-server" in err


def test_processor_with_unknown_handler_is_a_usage_error() -> None:
    """A bad --handler is exit code 2 with the reason."""
    result = CliRunner().invoke(main, ["processor", "--handler", "nope"])
    assert result.exit_code == 2
    assert "neither a built-in" in result.output


def test_every_option_shows_its_environment_variable() -> None:
    """Each command's --help names the variable of every option (see docs/configuration.md)."""
    runner = CliRunner()
    for name, command in commands(main):
        args = [name, "--help"] if name != "hopline" else ["--help"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        for param in command.params:
            if isinstance(param, click.Option) and param.expose_value:
                assert isinstance(param.envvar, str), f"{name} {param.name} has no env var"
                assert f"env var: {param.envvar}" in text, f"{name} --help: {param.envvar}"
                long = max(param.opts, key=len)  # the rule: docs/configuration.md
                rule = {env_var(long), env_var(long, name), "RABBITMQ_URL"}
                assert param.envvar in rule, f"hopline {name} {long}: {param.envvar}"


SECRET = "s" * 40


async def test_send_with_token_from_hopline_token(stack: Stack) -> None:
    """hopline token mints a JWT that hopline send --token gets through auth with."""
    gw = await stack.gateway(token_secret=SECRET)
    await stack.processor()
    code, token, err = await run_hopline("token", "--token-secret", SECRET, "--ttl", "60")
    assert code == 0, err
    code, out, _ = await run_hopline("send", "--url", ws_url(gw), "hello")
    assert code == 3  # refused with 401 before the upgrade
    code, out, err = await run_hopline(
        "send", "--url", ws_url(gw), "hello", env={"HOPLINE_TOKEN": token.strip()}
    )
    assert (code, out) == (0, "hello world\n"), err


def test_token_with_a_short_secret_is_a_usage_error() -> None:
    """A secret under 32 bytes cannot sign tokens the gateway accepts."""
    result = CliRunner().invoke(main, ["token", "--token-secret", "short"])
    assert result.exit_code == 2
    assert "at least 32 bytes" in result.output
