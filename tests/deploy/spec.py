"""Read the deployment files the way Docker would: compose.yaml, Dockerfile, .dockerignore.

Pure helpers (no network, no Docker): Compose variable interpolation, the Dockerfile's
instructions, the .dockerignore matcher, and parsing a service's command with the real
``hopline`` click group.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from click.core import ParameterSource

from hopline.cli import main

__all__ = [
    "ROOT",
    "Instruction",
    "check_service_cli",
    "cli_parameter",
    "dockerfile_instructions",
    "dockerignore_allows",
    "interpolate",
    "is_cli_variable",
    "load_compose",
    "parse_command",
    "service_environment",
    "variables",
]

ROOT = Path(__file__).resolve().parents[2]

# Compose interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Substitute variables in ``value`` as ``docker compose`` does with environment ``env``.

    Raises:
        ValueError: a ``${VAR:?message}`` variable is unset (Compose refuses to start).
    """

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op is not None and op.endswith("-"):
            return arg if missing else str(current)
        if op is not None and op.endswith("?"):
            if missing:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return str(current)
        return current or ""

    return _VARIABLE.sub(substitute, value)


def variables(value: str) -> list[str]:
    """Names of the variables ``value`` refers to."""
    return [m["braced"] or m["named"] for m in _VARIABLE.finditer(value) if not m["escaped"]]


def load_compose(path: Path = ROOT / "compose.yaml") -> dict[str, Any]:
    """The compose file as YAML data (anchors and ``<<`` merges resolved, not interpolated)."""
    with path.open() as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def service_environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's ``environment`` (mapping or list form), interpolated with ``env``."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, env.get(item, "")) for item in raw)
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def is_cli_variable(value: str) -> bool:
    """Whether an environment variable belongs to the hopline CLI (RABBITMQ_URL, HOPLINE_*)."""
    return value == "RABBITMQ_URL" or value.startswith("HOPLINE_")


@contextmanager
def cli_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Run with exactly ``env``'s hopline variables in ``os.environ`` (others left alone)."""
    saved = {key: value for key, value in os.environ.items() if is_cli_variable(key)}
    for key in saved:
        del os.environ[key]
    os.environ.update({key: value for key, value in env.items() if is_cli_variable(key)})
    try:
        yield
    finally:
        for key in [key for key in os.environ if is_cli_variable(key)]:
            del os.environ[key]
        os.environ.update(saved)


def parse_command(argv: list[str], env: Mapping[str, str]) -> click.Context:
    """Parse ``hopline <argv>`` with the real click group, reading options from ``env`` too.

    ``argv`` must start with the subcommand (group options go in their variables, e.g.
    ``HOPLINE_VERBOSE``). Returns the subcommand's context, whose parent is the group's.

    Raises:
        click.UsageError: an unknown command or option, or a value that does not parse
            (from the command line or from a variable).
    """
    with cli_environment(env):
        group_ctx = main.make_context("hopline", argv[:1])
        name, command, args = main.resolve_command(group_ctx, list(argv))
        assert name is not None and command is not None
        return command.make_context(name, args, parent=group_ctx)


def cli_parameter(ctx: click.Context, variable: str) -> click.Parameter | None:
    """The option of the subcommand (or of the group) that reads ``variable``."""
    for context in (ctx, ctx.parent):
        assert context is not None
        for param in context.command.params:
            names = [param.envvar] if isinstance(param.envvar, str) else param.envvar or []
            if variable in names:
                return param
    return None


def check_service_cli(name: str, service: Mapping[str, Any]) -> click.Context:
    """Parse a service's command with its default environment; fail unless all of it is used.

    Every ``RABBITMQ_URL``/``HOPLINE_*`` variable of the service must be read by an
    option of the command (or of the group) and be where that option got its value.
    """
    assert "entrypoint" not in service, f"{name}: the image's ENTRYPOINT must not be replaced"
    env = service_environment(service, {})
    ctx = parse_command(list(service["command"]), env)
    assert ctx.info_name == service["command"][0]
    for variable in filter(is_cli_variable, env):
        param = cli_parameter(ctx, variable)
        assert param is not None, f"{name}: no option of 'hopline {ctx.info_name}' reads {variable}"
        owner = ctx if param in ctx.command.params else ctx.parent
        assert owner is not None and param.name is not None
        # click treats an empty variable as unset: `${X:-}` means "the CLI default".
        expected = ParameterSource.ENVIRONMENT if env[variable] else ParameterSource.DEFAULT
        assert owner.get_parameter_source(param.name) is expected, f"{name}: {variable}"
    return ctx


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), its arguments, and its build stage."""

    keyword: str
    arguments: str
    stage: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, RUN), else None."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions (comments dropped, continuation lines joined)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    return instructions


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex on slash-separated paths (Go filepath.Match + ``**``)."""
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            if pattern.startswith("/", i):
                parts[-1] = "(?:.*/)?"
                i += 1
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            parts.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


def dockerignore_allows(path: str, dockerignore: str) -> bool:
    """Whether ``path`` (relative, slash-separated) is sent to the build with these rules.

    As in Docker: the last matching rule wins, a rule matching a parent directory
    matches everything below it, and ``!`` re-includes.
    """
    included = True
    for line in dockerignore.splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        rule = rule.lstrip("!").strip("/")
        regex = _pattern_regex(os.path.normpath(rule))
        segments = path.split("/")
        prefixes = ["/".join(segments[: n + 1]) for n in range(len(segments))]
        if any(regex.match(prefix) for prefix in prefixes):
            included = negate
    return included
