"""The options README.md and docs/ tell a user to type exist, with the defaults they state.

Pure: the ``hopline`` click group and the settings classes are read, nothing is run.

Where a flag belongs is decided by its context:

* a command line that invokes ``hopline`` (a line of a code block, an indented code
  line, or an inline code span, e.g. ``hopline up --port 8001``): flags before the
  subcommand are the group's (``-v``), flags after it the subcommand's; a code line
  that starts with a flag continues the previous line's command (YAML ``>-``); a
  ``# comment`` on such a line speaks of the same command;
* an inline code span that is only flags (``--window``, ``-c, --connections``, the cells
  of the options tables in docs/hardening.md and docs/configuration.md): an option of
  some hopline command; a span that starts with a subcommand name (``gateway
  --workers``): an option of that subcommand;
* anything else (``pip``, ``pytest``, ``docker``, ``curl``, ``bench/*.py``, ``python -m
  websockets``, ``rabbitmq-server``, ``ruff``) is another tool's and is not checked.

:data:`ALLOWED` lists the few flags these rules would wrongly report, each with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest

from gateway._websockets_compat import READ_SLICE
from gateway.admission import CONTROL_BACKLOG_LIMIT
from gateway.config import GatewaySettings
from hopline.cli import main
from hopline.settings import declared
from hopline.settings.reference import commands
from tests.test_docs import DOCS, README, ROOT, table_rows

PAGES = [README, *DOCS]
HARDENING = ROOT / "docs" / "hardening.md"

# (page, flag): why a flag these rules take for a hopline option is not one.
ALLOWED: dict[tuple[str, str], str] = {
    ("troubleshooting.md", "-v"): "`hopline gateway -v` is quoted as the usage error it is",
    ("hardening.md", "--scenario"): "bench/abuse.py's option (`--scenario baseline`)",
    ("hardening.md", "--stalled-processor"): "bench/abuse_memory.py's option, in a table row",
    ("performance.md", "--sweep-statistic"): "bench/run.py's option, named in prose",
    ("performance.md", "--profile"): "bench/stalls.py's option (`--profile py-spy`)",
    ("performance.md", "--compare"): "bench/stalls.py's option (`--compare DIR`)",
    ("operations.md", "--init"): "`docker run --init`",
}

SEPARATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>&1", "<"}
TOKEN = re.compile(r"""'[^']*'|"[^"]*"|\S+""")
SPAN = re.compile(r"(`+)(.+?)\1", re.S)
FENCE = re.compile(r"^\s*```")
COMMENT = re.compile(r"\s#\s")


@dataclass(frozen=True)
class Flag:
    """A flag found in a page, and the command it is given to (None: any hopline command)."""

    page: str
    line: int
    flag: str
    command: str | None
    where: str  # the command line or span, for the failure message

    def __str__(self) -> str:
        owner = f"hopline {self.command}" if self.command else "any hopline command"
        return f"{self.page}:{self.line}: {self.flag} is not an option of {owner}: {self.where}"


@cache
def options_by_command() -> dict[str, frozenset[str]]:
    """Every flag of ``hopline`` ("hopline") and of each subcommand, help options included."""
    group_ctx = click.Context(main, info_name="hopline")
    found: dict[str, frozenset[str]] = {}
    for name, command in commands(main):
        ctx = group_ctx if command is main else click.Context(command, parent=group_ctx)
        found[name] = frozenset(
            opt
            for param in command.get_params(ctx)
            for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("-")
        )
    return found


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def flags_in(words: list[str]) -> Iterator[str]:
    """The flags among ``words``: ``--name`` (``=value`` dropped), ``-vv`` as ``-v`` twice."""
    for word in words:
        word = word.rstrip(",.;:)")
        if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", word):
            yield word.partition("=")[0]
        elif re.fullmatch(r"-[a-zA-Z]+", word):
            yield from (f"-{letter}" for letter in word[1:])


def is_hopline(word: str) -> bool:
    return word == "hopline" or word.endswith("/hopline")


def compose_run(words: list[str]) -> int | None:
    """Where ``docker compose [...] run [flags] SERVICE`` ends, when a hopline subcommand follows.

    Every service of compose.yaml runs the hopline image, whose entrypoint is ``hopline``.
    """
    if words[:2] != ["docker", "compose"] or "run" not in words:
        return None
    service = next(
        i
        for i in range(words.index("run") + 1, len(words) + 1)
        if i == len(words) or not words[i].startswith("-")
    )
    if service + 1 < len(words) and words[service + 1] in options_by_command():
        return service
    return None


def invocation(words: list[str]) -> tuple[str, list[str], list[str]] | None:
    """(subcommand, group words, subcommand words) when ``words`` run ``hopline``, else None.

    The subcommand is ``"hopline"`` when none is given, and may be a placeholder
    (``<command>``). Only the words up to a shell separator belong to the command.
    """
    start = next((i for i, word in enumerate(words) if is_hopline(word)), compose_run(words))
    if start is None:
        return None
    rest = words[start + 1 :]
    end = next((i for i, word in enumerate(rest) if word in SEPARATORS), len(rest))
    rest = rest[:end]
    first = next((i for i, word in enumerate(rest) if not word.startswith("-")), len(rest))
    if first == len(rest):
        return "hopline", rest, []
    return rest[first], rest[:first], rest[first + 1 :]


def command_flags(page: str, line: int, text: str) -> tuple[list[Flag], str | None]:
    """The flags of a command line that runs hopline, and its subcommand (None: not hopline)."""
    parts = COMMENT.split(text, maxsplit=1)
    code, comment = parts[0], parts[1] if len(parts) > 1 else ""
    found = invocation(tokens(code))
    if found is None:
        return [], None
    command, group_words, words = found
    where = " ".join(text.split())
    flags = [Flag(page, line, flag, "hopline", where) for flag in flags_in(group_words)]
    flags += [Flag(page, line, flag, command, where) for flag in flags_in(words)]
    flags += [Flag(page, line, flag, command, where) for flag in flags_in(tokens(comment))]
    return flags, command


def code_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each code line: fenced blocks and 4-space indented lines.

    A line ending in a backslash is joined with the next one.
    """
    fenced = False
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced and not (line.startswith("    ") and "`" not in line):
            continue
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
            pending = None
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        yield number, line


def spans(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each inline code span outside fenced blocks, whitespace folded."""
    lines = path.read_text().splitlines()
    fenced = False
    masked = []
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
            masked.append("")
        else:
            masked.append("" if fenced else line)
    text = "\n".join(masked)
    for match in SPAN.finditer(text):
        if "\n\n" not in match.group(2):
            yield text.count("\n", 0, match.start()) + 1, " ".join(match.group(2).split())


def documented_flags(path: Path) -> Iterator[Flag]:
    """Every flag ``path`` gives to a hopline command, with that command (see the module doc)."""
    page = path.name
    previous: str | None = None
    for number, line in code_lines(path):
        if line.strip().startswith("-") and previous is not None:
            line = f"hopline {previous} {line}"
        flags, command = command_flags(page, number, line)
        previous = command
        yield from flags
    subcommands = set(options_by_command())
    for number, span in spans(path):
        words = tokens(span)
        if invocation(words) is not None:
            yield from command_flags(page, number, span)[0]
        elif words[0].startswith("-"):
            yield from (Flag(page, number, flag, None, span) for flag in flags_in(words))
        elif words[0] in subcommands and len(words) > 1 and words[1].startswith("-"):
            yield from command_flags(page, number, f"hopline {span}")[0]


def known(flag: Flag) -> bool:
    options = options_by_command()
    if flag.command is None:
        return any(flag.flag in flags for flags in options.values())
    if flag.command not in options:  # a placeholder such as <command>: every command has it
        return all(flag.flag in flags for flags in options.values())
    return flag.flag in options[flag.command]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_flag_is_an_option_of_its_command(page: Path) -> None:
    """Each flag a page tells a user to give hopline is an option of that (sub)command."""
    wrong = [
        str(flag)
        for flag in documented_flags(page)
        if not known(flag) and (flag.page, flag.flag) not in ALLOWED
    ]
    assert wrong == [], "\n".join(wrong)


def test_the_allowlist_is_needed() -> None:
    """Every ALLOWED entry still names a flag its page uses and hopline does not have."""
    found = {(f.page, f.flag) for page in PAGES for f in documented_flags(page) if not known(f)}
    assert set(ALLOWED) <= found, f"no longer needed: {sorted(set(ALLOWED) - found)}"


def test_the_flag_finder_sees_the_pages() -> None:
    """The rules find flags in code blocks, indented code, spans and YAML continuations."""
    found = {(f.page, f.flag, f.command) for page in PAGES for f in documented_flags(page)}
    assert ("README.md", "--input-queue", "up") in found  # span: hopline up ... --input-queue
    assert ("README.md", "--help", "<command>") in found  # a span over a line break
    assert ("loadtest.md", "--slo", "loadtest") in found  # YAML: a line continuing the command
    assert ("cluster.md", "--rabbitmq-url", "gateway") in found  # indented code
    assert ("hardening.md", "--max-send-queue", None) in found  # a table cell
    assert ("troubleshooting.md", "--workers", "gateway") in found  # `gateway --workers`
    assert not any(page == "performance.md" and flag == "--quick" for page, flag, _ in found)
    assert not any(flag == "--build" for _, flag, _ in found)  # docker compose up --build
    assert ("operations.md", "--duration", "loadtest") in found  # docker compose run ... loadtest
    assert not any(flag in ("--rm", "--no-deps") for _, flag, _ in found)


# docs/hardening.md: the limits tables

SIZE = re.compile(r"^([\d,.]+)\s*(KiB|MiB|GiB|s|/s)?$")
UNITS = {None: 1, "s": 1, "/s": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
# Rows whose limit has no option: the constant the code holds.
CONSTANTS = {
    "Bytes parsed per loop turn": READ_SLICE,
    "Pongs piling up unread": CONTROL_BACKLOG_LIMIT,
}


def stated_value(text: str) -> float | None:
    """The value a default cell states: ``64 KiB``, ``100,000``, ``5 s``, ``off``, ``none``.

    A parenthesised note (``(0 = none)``, ``(bucket of 10)``) is dropped; ``off`` and
    ``none`` are None (the setting's "no limit": 0 or None).
    """
    head = re.sub(r"\(.*?\)", "", text).strip().strip("`")
    if head in ("off", "none"):
        return None
    match = SIZE.match(head)
    assert match is not None, f"docs/hardening.md: cannot read the default {text!r}"
    return float(match.group(1).replace(",", "")) * UNITS[match.group(2)]


@dataclass(frozen=True)
class LimitRow:
    limit: str
    options: list[str]
    variables: list[str]
    default: str
    same: bool  # "same `--rate-limit`": the row repeats options an earlier row gave
    line: str


def hardening_rows() -> list[LimitRow]:
    """The rows of every ``| limit | option / env var | default | ... |`` table."""
    found = []
    for table in re.split(r"\n\s*\n", HARDENING.read_text()):
        rows = table_rows(table)
        if not rows or rows[0][:3] != ["limit", "option / env var", "default"]:
            continue
        for row in rows[2:]:
            limit, option_cell, default = row[:3]
            options = re.findall(r"`(--[a-z0-9-]+)`", option_cell)
            variables = re.findall(r"`(HOPLINE_[A-Z0-9_]+)`", option_cell)
            same = option_cell.startswith("same ")
            found.append(LimitRow(limit, options, variables, default, same, " | ".join(row[:3])))
    return found


def gateway_setting(option: str) -> tuple[str, object, str]:
    """(field name, default, environment variable) of a gateway option."""
    for name, spec in declared(GatewaySettings).items():
        if spec.option(name) == option:
            return name, spec.default, spec.envvar(name)
    raise AssertionError(f"docs/hardening.md: {option} is not a gateway setting")


def test_hardening_tables_are_read() -> None:
    rows = hardening_rows()
    assert len(rows) >= 20
    assert any(row.options == ["--rate-limit", "--rate-burst"] for row in rows)


@pytest.mark.parametrize("row", hardening_rows(), ids=lambda r: r.limit)
def test_hardening_limit_is_the_option_the_code_has(row: LimitRow) -> None:
    """The option exists for gateway and up, its variable is the registry's, and the
    stated default is the settings default (or the constant of a limit without option)."""
    if not row.options:
        assert row.limit in CONSTANTS, f"docs/hardening.md: no option and no constant: {row.line}"
        sizes = re.findall(r"\d[\d,.]*\s*(?:KiB|MiB)", row.line)
        assert [stated_value(size) for size in sizes] == [CONSTANTS[row.limit]], row.line
        return
    for command in ("gateway", "up"):
        missing = set(row.options) - options_by_command()[command]
        assert not missing, f"docs/hardening.md: hopline {command} has no {missing}: {row.line}"
    stated = stated_value(row.default)
    settings = [gateway_setting(option) for option in row.options]
    if not row.same:
        assert row.variables == [variable for _, _, variable in settings], row.line
    for name, default, _ in settings:
        if stated is None:
            assert default in (0, None) and default is not False, f"{name}: {row.line}"
        else:
            assert default == stated, f"{name} defaults to {default}: {row.line}"
