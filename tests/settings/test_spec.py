"""The settings registry on its own: one declaration gives a field, an option and a variable."""

from __future__ import annotations

from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from hopline.settings import Group, Setting, build, click_options, declared, env_var, setting


@dataclass(frozen=True)
class Inner:
    name: str = "q"
    limit: int | None = None


SHARED = Setting("amqp://x/", "Broker.", env="RABBITMQ_URL")
INNER = Group(
    Inner,
    {
        "name": Setting("q", "Queue name."),
        "max_limit": Setting(None, "Limit.", type=click.IntRange(min=1), attr="limit"),
    },
)


@dataclass(frozen=True)
class One:
    url: str = SHARED.field()
    inner: Inner = INNER.field()  # noqa: RUF009 (a field, like dataclasses.field)
    window: int = setting(8, "Window.", type=click.IntRange(min=1), short="-w")
    timeout: float = setting(3.0, "Timeout.", command="one")
    loud: bool = setting(False, "Loud.", off_flag="--quiet")
    tags: frozenset[str] = setting(
        frozenset(), "Tag.", flag="--tag", multiple=True, convert=frozenset, cli_default=()
    )
    internal: float = 1.0


@dataclass(frozen=True)
class Two:
    url: str = SHARED.field()
    procs: int = setting(1, "Processes.", cli_default=None, show_default="CPU count")


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[object]]:
    seen: list[object] = []

    @click.command()
    @click_options(One, Two)
    def probe(**kw: object) -> None:
        seen.append((build(One, kw), kw["procs"]))

    result = CliRunner().invoke(probe, list(args), env=env)
    return result.exit_code, result.output, seen


def test_env_var_rule() -> None:
    """HOPLINE_<OPTION>, or HOPLINE_<COMMAND>_<OPTION> for an option scoped to its command."""
    assert env_var("--max-batch") == "HOPLINE_MAX_BATCH"
    assert env_var("--timeout", "send") == "HOPLINE_SEND_TIMEOUT"
    assert env_var("--connect-timeout", "loadtest") == "HOPLINE_LOADTEST_CONNECT_TIMEOUT"


def test_declared_names_follow_fields_and_groups_in_order() -> None:
    """Fields with a setting and group members are declared; plain fields are not."""
    assert list(declared(One)) == ["url", "name", "max_limit", "window", "timeout", "loud", "tags"]


def test_defaults_build_the_dataclass_defaults() -> None:
    """No option and no variable: the built settings equal the dataclass' own defaults."""
    code, output, seen = run()
    assert code == 0, output
    assert seen == [(One(), None)]


def test_options_and_variables_fill_the_fields() -> None:
    """Options, short options, on/off pairs, groups and conversions all reach the dataclass."""
    code, output, seen = run(
        "-w", "3", "--quiet", "--tag", "a", "--tag", "b", "--max-limit", "5", "--name", "z"
    )
    assert code == 0, output
    assert seen == [(One(inner=Inner("z", 5), window=3, tags=frozenset("ab")), None)]
    env = {"HOPLINE_WINDOW": "4", "HOPLINE_ONE_TIMEOUT": "0.5", "RABBITMQ_URL": "amqp://y/"}
    code, output, seen = run(env=env)
    assert code == 0, output
    assert seen == [(One(url="amqp://y/", window=4, timeout=0.5), None)]


def test_help_names_every_variable_and_default() -> None:
    """--help shows each option's variable and its default (or the described one)."""
    code, output, _ = run("--help")
    text = " ".join(output.split())
    assert code == 0
    for var in ("RABBITMQ_URL", "HOPLINE_NAME", "HOPLINE_MAX_LIMIT", "HOPLINE_ONE_TIMEOUT"):
        assert f"env var: {var}" in text
    assert "default: (CPU count)" in text
    assert "HOPLINE_PROCS" in text


def test_a_bad_value_is_a_usage_error() -> None:
    """A value outside the declared type exits 2 and names the option."""
    code, output, _ = run("--window", "0")
    assert code == 2
    assert "--window" in output


def test_one_name_two_settings_is_refused() -> None:
    """Two classes declaring the same option differently cannot share a command."""

    @dataclass(frozen=True)
    class Clash:
        url: str = setting("other", "Another URL.")

    with pytest.raises(TypeError, match="declared twice"):
        click_options(One, Clash)
