"""The configuration reference: every option of every command as Markdown tables.

``docs/configuration.md`` holds the output of :func:`markdown` between two markers;
a test regenerates it from the real ``hopline`` command and fails when they differ.
This module takes the click group as an argument (it never imports the command).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

__all__ = ["Row", "commands", "markdown", "rows"]

HEADER = "| Option | Variable | Default | Meaning |"


@dataclass(frozen=True, slots=True)
class Row:
    """One option as the reference shows it."""

    option: str  # "-c, --connections" or "--persistent / --transient"
    env: str
    default: str
    help: str
    commands: tuple[str, ...]


def commands(group: click.Group) -> list[tuple[str, click.Command]]:
    """``("hopline", group)`` then every subcommand, by name (lazy ones included)."""
    ctx = click.Context(group, info_name="hopline")
    found: list[tuple[str, click.Command]] = [("hopline", group)]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None:
            found.append((name, command))
    return found


def _default(param: click.Option) -> str:
    if isinstance(param.show_default, str):
        return param.show_default
    if param.show_default is False:
        return ""
    default: Any = param.default
    if param.is_flag and param.secondary_opts:
        return ", ".join(param.opts if default else param.secondary_opts)
    if param.is_flag and not param.count:
        return "on" if default else "off"
    if default is None or default == ():
        return ""
    return str(default)


def rows(group: click.Group) -> list[Row]:
    """One row per environment variable, with the commands whose option reads it."""
    found: dict[str, Row] = {}
    for name, command in commands(group):
        for param in command.params:
            if not isinstance(param, click.Option) or not isinstance(param.envvar, str):
                continue
            option = ", ".join(param.opts)
            if param.secondary_opts:
                option += " / " + ", ".join(param.secondary_opts)
            row = found.get(param.envvar)
            used_by = (row.commands if row else ()) + (name,)
            help_text = param.help or ""
            found[param.envvar] = Row(option, param.envvar, _default(param), help_text, used_by)
    return list(found.values())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "\\<") if text else " "


def markdown(group: click.Group) -> str:
    """The tables: one section per set of commands sharing options, in command order."""
    sections: dict[tuple[str, ...], list[Row]] = {}
    for row in rows(group):
        sections.setdefault(row.commands, []).append(row)
    out: list[str] = []
    for used_by, section in sections.items():
        title = ", ".join("hopline" if c == "hopline" else f"hopline {c}" for c in used_by)
        out += [f"### {title}", "", HEADER, "|---|---|---|---|"]
        for row in section:
            cells = (f"`{row.option}`", f"`{row.env}`", _cell(row.default), _cell(row.help))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
