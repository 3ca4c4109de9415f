"""Key bindings of the TUI (no network: a stub connection and a fake clock)."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from hopline.broker_node import free_port
from hopline.cli import main
from tests.tui.demo import SIZE, StubClient, demo_app
from tui.help import HelpScreen
from tui.widgets.chat import EntryView


async def test_q_types_into_the_input_and_quits_outside_it() -> None:
    """While typing, q is a letter; after escape, q quits."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q", "u", "i", "t")
        assert app.input.value == "quit" and app.is_running
        await pilot.press("escape")
        assert not app.input.has_focus
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_ctrl_c_quits_even_while_typing() -> None:
    """ctrl+c quits from the input line (it is not taken as copy), as an interruption (130)."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h", "ctrl+c")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 130


async def test_f1_opens_help_and_escape_closes_it() -> None:
    """The help screen opens with f1 and closes with escape, back to the input line."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        assert app.input.has_focus


async def test_burst_key_sends_n_requests_with_distinct_ids() -> None:
    """ctrl+b sends --burst requests at once, shown as one entry with all pending."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+b")
        client = app.client
        assert isinstance(client, StubClient)
        ids = [request_id for request_id, _ in client.sent]
        assert len(ids) == len(set(ids)) == 100
        assert all(data == "hello" for _, data in client.sent)
        assert app.conversation.outstanding == 100
        assert "100 left" in str(app.query_one(EntryView).content)


async def test_enter_while_disconnected_keeps_the_message() -> None:
    """Without a connection nothing is sent and the typed text stays in the input."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        client = app.client
        assert isinstance(client, StubClient)
        client.connected = False
        await pilot.press(*"hi", "enter", "ctrl+b")
        assert client.sent == [] and app.input.value == "hi"
        assert not app.query(EntryView)


def test_cli_help_names_every_environment_variable() -> None:
    """hopline tui --help shows each option's environment variable."""
    result = CliRunner().invoke(main, ["tui", "--help"])
    assert result.exit_code == 0
    for env in (
        "HOPLINE_URL",
        "HOPLINE_TOKEN",
        "HOPLINE_BURST",
        "HOPLINE_STATS_INTERVAL",
        "HOPLINE_MAX_BACKOFF",
        "HOPLINE_TUI_CONNECT_TIMEOUT",
    ):
        assert env in result.output


def test_cli_rejects_a_url_that_is_not_websocket() -> None:
    """A non-ws URL is a usage error (exit 2) before any screen is drawn."""
    result = CliRunner().invoke(main, ["tui", "--url", "http://localhost:8000/ws"])
    assert result.exit_code == 2
    assert "not a ws:// or wss:// URL" in result.output


def read_until(fd: int, done: Callable[[bytes], bool], timeout: float = 30.0) -> bytes:
    """What the terminal shows until ``done(output)`` or the end of output (or the deadline)."""
    out = b""
    deadline = time.monotonic() + timeout
    while not done(out) and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the program closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.parametrize("how", ["ctrl+c key", "SIGINT"])
def test_the_tui_in_a_terminal_ends_on_ctrl_c_with_130_and_one_line(how: str) -> None:
    """`hopline tui` in a real terminal: ctrl+c (a key: the terminal is raw) or a SIGINT
    restores the screen, says 'hopline: interrupted' and exits 130, as every command does."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing there: the TUI keeps reconnecting
    with subprocess.Popen(
        [sys.executable, "-m", "hopline", "tui", "--url", url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color"},
    ) as proc:
        os.close(slave)
        try:
            shown = read_until(master, lambda out: b"Quit" in out)
            assert b"Quit" in shown, shown[-500:]
            if how == "SIGINT":
                proc.send_signal(signal.SIGINT)
            else:
                os.write(master, b"\x03")
            rest = read_until(master, lambda out: False)
            assert proc.wait(timeout=30) == 130
        finally:
            proc.kill()
            os.close(master)
    assert rest.count(b"hopline: interrupted") == 1
    assert rest.endswith(b"hopline: interrupted\r\n"), rest[-200:]
    leave_screen = rest.rfind(b"\x1b[?1049l")  # back to the shell's screen, then the line
    assert 0 <= leave_screen < rest.index(b"hopline: interrupted"), rest[-200:]
