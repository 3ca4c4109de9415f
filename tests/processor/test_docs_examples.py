"""The handler examples of docs/handlers.md, extracted and run behind a gateway and processor."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import hopline
from hopline.client.errors import RequestError
from tests.conftest import Stack, ws_url

DOC = Path(__file__).resolve().parents[2] / "docs" / "handlers.md"
BLOCK = re.compile(r"```python\n# file: (\w+)\.py\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    """Module name -> source of every ``# file:`` example in the page."""
    return {name: f"# file: {name}.py\n{body}" for name, body in BLOCK.findall(DOC.read_text())}


@pytest.fixture
def example_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The examples written as importable modules (forgotten afterwards)."""
    found = examples()
    for name, source in found.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield found
    for name in found:
        sys.modules.pop(name, None)


def test_the_page_has_the_examples_the_tests_check() -> None:
    """Every example on the page is checked below (a new one needs a test)."""
    assert sorted(examples()) == sorted(CHECKS)


async def check_shout(client: hopline.Client) -> None:
    assert await client.request("hey") == "HEY"


async def check_greet(client: hopline.Client) -> None:
    reply = await client.request("ann")
    assert re.fullmatch(r"hello ann \(attempt 1, (29|30) s left\)", reply), reply
    with pytest.raises(RequestError) as refused:
        await client.request(" ")
    assert refused.value.code == "bad_request"
    assert "send a name" in str(refused.value)


async def check_pooled(client: hopline.Client) -> None:
    assert await client.request("bob") == "hi bob"


async def check_tokens(client: hopline.Client) -> None:
    assert [c async for c in client.stream("a b c")] == ["a ", "b ", "c "]


CHECKS = {
    "shout": check_shout,
    "greet": check_greet,
    "pooled": check_pooled,
    "tokens": check_tokens,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_example_does_what_the_page_says(
    stack: Stack, example_modules: dict[str, str], name: str
) -> None:
    """The example module, run by a processor behind a gateway, answers as documented."""
    gw = await stack.gateway()
    await stack.processor(f"{name}:handle")
    await stack.batching_ready(gw)
    async with hopline.connect(ws_url(gw)) as client:
        await CHECKS[name](client)
