"""README and docs/ say what the code does: commands, error codes, metrics, exit codes, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.metrics import GatewayMetrics
from hopline import runtime
from hopline.cli import main
from hopline.wire.batch import (
    Chunk,
    ItemError,
    decode_partials,
    decode_replies,
    decode_requests,
    encode_partials,
    encode_replies,
    encode_requests,
)
from hopline.wire.errors import HTTP_STATUS_BY_CODE, ErrorCode

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def prose(path: Path) -> str:
    """The Markdown of ``path`` without its fenced code blocks."""
    return FENCE.sub("", path.read_text())


def code_blocks(path: Path) -> list[str]:
    return [block.strip("`") for block in FENCE.findall(path.read_text())]


def test_readme_is_a_front_door() -> None:
    """README.md stays short (~8 KB): details go to docs/ pages, linked from it."""
    size = len(README.read_bytes())
    assert size <= 8 * 1024, f"README.md is {size} bytes; move details to a docs/ page"


def test_readme_commands_are_the_ones_ci_runs() -> None:
    """The set-up and test commands in README are exactly the ones .ci/run runs."""
    readme = "\n".join(code_blocks(README))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in ("python3 -m venv .venv", ". .venv/bin/activate", "pip install -e '.[dev]'"):
        assert command in readme
        assert any(line.replace(" -q", "").strip().startswith(command) for line in ci), command
    assert re.search(r"^pytest$", readme, re.M)
    assert "pytest" in [line.strip() for line in ci]


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.lstrip().startswith("|")
    ]


def test_every_error_code_is_documented_with_its_http_status() -> None:
    """docs/protocol.md has a row for each ErrorCode with its /stream status."""
    rows = {row[0]: row for row in table_rows(prose(ROOT / "docs" / "protocol.md"))}
    for code in ErrorCode:
        row = rows.get(f"`{code.value}`")
        assert row is not None, f"docs/protocol.md: no row for error code {code.value}"
        assert str(HTTP_STATUS_BY_CODE[code]) in row, f"{code.value}: status not in {row}"


def exported_metrics() -> list[str]:
    """The metric names a scraper sees on /metrics (counters with their ``_total``)."""
    lines = GatewayMetrics().render().decode().splitlines()
    return [line.split()[2] for line in lines if line.startswith("# TYPE ")]


def test_every_metric_is_documented() -> None:
    """Each metric the gateway exports is named in docs/protocol.md."""
    text = prose(ROOT / "docs" / "protocol.md")
    names = exported_metrics()
    assert "hopline_requests_total" in names  # the scrape found the metrics
    missing = [name for name in names if f"`{name}" not in text]
    assert missing == [], f"docs/protocol.md does not mention {missing}"


EXIT_CODES = {
    runtime.OK: "ok",
    runtime.FAILED: "failed",
    runtime.USAGE: "usage",
    runtime.STARTUP_FAILURE: "could not start",
    runtime.NO_CONNECTION: "connection",
    runtime.INTERRUPTED: "interrupted",
}


@pytest.mark.parametrize(("code", "meaning"), sorted(EXIT_CODES.items()))
def test_every_exit_code_is_documented(code: int, meaning: str) -> None:
    """README and `hopline --help` give each exit code with its meaning."""
    readme = " ".join(prose(README).split())
    assert re.search(rf"`{code}` [^`]*{meaning}", readme), f"README: exit code {code}"
    assert main.help is not None
    assert re.search(rf"\b{code} [^,]*{meaning}", " ".join(main.help.split()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose(path), re.M)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link (and its #anchor) points at a file and heading that exist."""
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: broken link {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: no heading for {target}"


def test_readme_keeps_a_documentation_list() -> None:
    """README has a Documentation section listing docs/ pages, one link per line."""
    text = README.read_text()
    section = text.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    assert section.count("](docs/") >= 5


def test_protocol_byte_examples_are_what_the_code_encodes() -> None:
    """The hex examples of docs/protocol.md (request batch, reply batch, partial reply batch)
    are byte for byte what hopline.wire.batch encodes, and decode back to what the text says."""
    hex_blocks = [
        bytes.fromhex(block.strip())
        for block in code_blocks(ROOT / "docs" / "protocol.md")
        if block.strip() and re.fullmatch(r"[0-9a-f ]+", block.strip())
    ]
    requests: list[str | bytes] = ["hi", b"\x01"]
    replies: list[str | bytes | ItemError] = ["hi world", ItemError("bad_request", "no")]
    chunks = [Chunk(0, 0, "a "), Chunk(1, 0, "x", last=True), Chunk(0, 1, "b ")]
    assert hex_blocks == [
        encode_requests(requests),
        encode_replies(replies),
        encode_partials(chunks),
    ]
    assert decode_requests(hex_blocks[0]) == requests
    assert list(decode_replies(hex_blocks[1], 2)) == replies
    assert decode_partials(hex_blocks[2]) == chunks
