"""The lines docs/troubleshooting.md (and any page's ``hopline: ...`` span) quote exist.

Pure: the product's source is parsed (``ast``), nothing is run. A documented line is
"in the source" when it can be spelled from the product's string literals: the text
between its variable parts (numbers, ``'x'``, ``<queue>``, ``N``, ``...``, an exception
class name) must be a substring of one literal, or where hopline builds the line from
several strings, the end of one literal (before a ``{placeholder}``), whole literals, and
the start of another. Text the OS or RabbitMQ writes is listed in :data:`EXTERNAL`.
"""

from __future__ import annotations

import ast
import errno
import os
import re
from collections.abc import Iterator
from functools import cache

import pytest

from tests.test_docs import DOCS, EXIT_CODES, README, ROOT, table_rows
from tests.test_docs_options import options_by_command, spans

TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
PRODUCT = ["hopline", "gateway", "processor", "loadtest", "tui"]

# Text in a documented line that hopline passes on from elsewhere, and from where.
EXTERNAL = {
    os.strerror(errno.EADDRINUSE): "the OS's EADDRINUSE text, in runtime.listen_error's line",
    os.strerror(errno.ECONNREFUSED).lower(): "the OS's ECONNREFUSED text, lower-cased by "
    "broker_node.amqp_problem",
    "Name or service not known": "getaddrinfo's (glibc) text for an unknown host, in "
    "broker_node.amqp_problem's line",
    "ACCESS_REFUSED - Login was refused": "RabbitMQ's own reply to a bad login, passed on by "
    "hopline.wire.connect",
}
VARIABLE = re.compile(
    r"\.\.\.|…|<[^<>\s]+>|'[^'\s]*'|\b\d+(?:\.\d+)*\b|\bN\b|\b[A-Z][A-Za-z]*(?:Error|Exception)\b"
)
MAX_MESSAGE = 400  # longer literals are not lines a user is shown
PROGRAMS = {"python", "python3", "pytest", "pip", "kill", "docker", "ps", "rabbitmq-server"}


def folded(text: str) -> str:
    return " ".join(text.split())


@cache
def literals() -> tuple[frozenset[str], frozenset[str], frozenset[str], str]:
    """(whole literal parts, their prefixes, their suffixes, all parts joined by NUL).

    A part is a string constant, or the text of an f-string between two placeholders;
    implicitly concatenated literals are one (``ast`` joins them).
    """
    parts: set[str] = set()
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
            for node in ast.walk(tree):  # an f-string's parts are Constants too
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                ):
                    parts.add(re.sub(r"\s+", " ", node.value))
    short = [part for part in parts if len(part) <= MAX_MESSAGE]
    prefixes = {part[:n] for part in short for n in range(1, len(part) + 1)}
    suffixes = {part[n:] for part in short for n in range(len(part))}
    return frozenset(parts), frozenset(prefixes), frozenset(suffixes), "\0".join(parts)


def spelled(chunk: str) -> bool:
    """Whether ``chunk`` (fixed text of a documented line) can be built from the literals."""
    whole, prefixes, suffixes, corpus = literals()
    if chunk in corpus:
        return True
    reach = {0}
    for start in range(len(chunk)):
        if start not in reach:
            continue
        for end in range(start + 1, len(chunk) + 1):
            piece = chunk[start:end]
            if len(piece.strip()) < 2:
                continue
            if start == 0:
                ok = piece in suffixes
            elif end == len(chunk):
                ok = piece in prefixes
            else:
                ok = piece in whole
            if ok:
                reach.add(end)
    return len(chunk) in reach


def fixed_text(line: str) -> list[str]:
    """The chunks of a documented line between its variable parts and external texts."""
    for text in EXTERNAL:
        line = line.replace(text, "\0")
    return [chunk for chunk in VARIABLE.sub("\0", line).split("\0") if chunk.strip()]


def is_message(span: str) -> bool:
    """A span that quotes a line hopline prints, not a command, option, path or name."""
    words = span.split()
    if len(words) < 2 or words[0].startswith("-") or "=" in words[0]:
        return False
    if words[0] in PROGRAMS:
        return False
    commands = options_by_command()
    if words[0] == "hopline" and (words[1] in commands or words[1][0] in "-<"):
        return not words[1].endswith(":") and any(w.endswith(":") for w in words[2:])
    return not (words[0] in commands and words[1].startswith("-"))


def documented_lines() -> Iterator[tuple[str, int, str]]:
    """(page, line, text) of each quoted line: troubleshooting.md's, and ``hopline: ...``."""
    for page in [README, *DOCS]:
        for number, span in spans(page):
            if span.startswith("hopline: ") or (page == TROUBLESHOOTING and is_message(span)):
                yield page.name, number, span


def test_the_quoted_lines_are_found() -> None:
    found = {text for _, _, text in documented_lines()}
    assert "hopline: interrupted" in found
    assert "connection refused" in found  # a cell of "the line ends with"
    assert any(text.startswith("hopline processor ready: consuming") for text in found)
    assert not any(text.startswith(("hopline -v", "hopline gateway", "python")) for text in found)


@pytest.mark.parametrize(("page", "number", "text"), list(documented_lines()))
def test_a_documented_line_is_in_the_source(page: str, number: int, text: str) -> None:
    """Every fixed part of a quoted error or status line is spelled by the product's source."""
    missing = [chunk for chunk in fixed_text(text) if not spelled(chunk)]
    assert missing == [], f"{page}:{number}: {text!r}: not in the source: {missing}"


def test_external_texts_are_quoted() -> None:
    """Each EXTERNAL entry is still part of a documented line."""
    quoted = " ".join(text for _, _, text in documented_lines())
    assert [text for text in EXTERNAL if text not in quoted] == []


def test_troubleshooting_exit_codes_are_the_codes() -> None:
    """Its exit-code table has a row for each code (with its meaning) and no other; every
    `exit N` its prose names is one of them."""
    text = TROUBLESHOOTING.read_text()
    rows = {row[0].strip("`"): row[1] for row in table_rows(text) if re.fullmatch(r"`\d+`", row[0])}
    assert {int(code) for code in rows} == set(EXIT_CODES)
    for code, meaning in EXIT_CODES.items():
        assert meaning in rows[str(code)], f"exit code {code}: {rows[str(code)]!r}"
    named = re.findall(r"\bexit(?:s| code|ed with code)? (\d+)\b", folded(text))
    assert named and {int(code) for code in named} <= set(EXIT_CODES), named
