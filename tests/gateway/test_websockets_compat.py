"""The websockets internals the gateway relies on still exist (fails loudly on an upgrade)."""

from __future__ import annotations

import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from gateway import _websockets_compat as compat


def test_every_internal_the_gateway_uses_exists() -> None:
    compat.check()  # raises RuntimeError naming what is missing


def test_check_names_a_missing_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "_PROTOCOL_METHODS", ("send_text", "no_such_method"))
    with pytest.raises(RuntimeError, match=r"Protocol\.no_such_method"):
        compat.check()


def test_overridden_methods_exist_on_the_library_class() -> None:
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "eof_received",
        "pause_writing",
        "resume_writing",
        "process_event",
        "handshake",
    ):
        assert callable(getattr(ServerConnection, name)), name
        assert name in vars(compat.HookedConnection), name


def test_version_is_in_the_pinned_range() -> None:
    major, minor = (int(part) for part in websockets.__version__.split(".")[:2])
    assert (major, minor) >= (17, 0) and major < 18, websockets.__version__
