"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, pages from the test.

* ``chromium``: a headless Chromium launched from ``/usr/bin/chromium`` for one test
  (``playwright install`` cannot download browsers here; ``.ci/run`` installs the
  Debian package). A missing browser fails the tests; nothing is skipped.
* ``pages``: an HTTP server on 127.0.0.1 serving test pages. The gateway listens on
  ``127.0.0.1`` too, so a page loaded from ``pages.app`` (``http://127.0.0.1:<port>``)
  is another origin of the same site, and one from ``pages.evil``
  (``http://localhost:<port>``) is a cross-site page, as a stranger's website would be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from gateway.server import Gateway

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "browser-example.html"
BLANK = b"<!doctype html><meta charset=utf-8><title>hopline test page</title><body></body>"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; fails (never skips) when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)", pytrace=False
        )
    return str(CHROMIUM)


@pytest.fixture
async def chromium(chromium_path: str) -> AsyncIterator[Browser]:
    """A headless Chromium for one test."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path)
        try:
            yield browser
        finally:
            await browser.close()


class Pages:
    """Serves ``/blank.html`` and ``/example.html`` (docs/browser-example.html)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def app(self) -> str:
        """The origin of the app's pages (allowed in the tests that set an allow-list)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def evil(self) -> str:
        """The origin of a cross-site page (never allowed)."""
        return f"http://localhost:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].split(b"?")[0]
            body = _page(path)
            status = b"200 OK" if body is not None else b"404 Not Found"
            body = body or b"not found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n" + body
            )
            await writer.drain()
        writer.close()

    async def open(self, browser: Browser, origin: str, path: str = "/blank.html") -> Page:
        """A new page (in its own context) loaded from ``origin``."""
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(origin + path)
        return page


def _page(path: bytes) -> bytes | None:
    if path == b"/blank.html":
        return BLANK
    return EXAMPLE_PAGE.read_bytes() if path == b"/example.html" else None


@pytest.fixture
async def pages() -> AsyncIterator[Pages]:
    """The test's page server on 127.0.0.1 (two origins: ``app`` and ``evil``)."""
    server = Pages()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def gateway_base(gw: Gateway) -> str:
    """The gateway's http base URL as pages use it."""
    return f"http://127.0.0.1:{gw.port}"
