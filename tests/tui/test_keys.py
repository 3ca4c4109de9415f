"""Key bindings of the TUI (no network: a stub connection and a fake clock)."""

from __future__ import annotations

from click.testing import CliRunner

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


async def test_ctrl_c_quits_even_while_typing() -> None:
    """ctrl+c quits from the input line (it is not taken as copy)."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h", "ctrl+c")
        await pilot.pause()
        assert not app.is_running


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
