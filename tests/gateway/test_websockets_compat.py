"""The websockets internals the gateway relies on still exist (fails loudly on an upgrade)."""

from __future__ import annotations

import pytest
import websockets
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

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


class _Conn:
    """What send_now touches of a connection: its protocol."""

    def __init__(self, protocol: ServerProtocol) -> None:
        self.protocol = protocol


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("kind", [str, bytes])
def test_send_now_writes_the_frame_websockets_would(size: int, kind: type) -> None:
    """The hand-built header gives the bytes websockets' own serializer gives, at every
    length-field boundary, and websockets' frame parser reads the message back."""
    ours, theirs = ServerProtocol(), ServerProtocol()
    for protocol in (ours, theirs):
        protocol.state = State.OPEN
    message = "é" * (size // 2) + "x" * (size % 2) if kind is str else bytes(range(256)) * 300
    if kind is bytes:
        message = message[:size]
    compat.send_now(_Conn(ours), message)  # type: ignore[arg-type]
    if isinstance(message, str):
        theirs.send_text(message.encode())
    else:
        theirs.send_binary(message)
    sent = b"".join(ours.data_to_send())
    assert sent == b"".join(theirs.data_to_send())
    reader = StreamReader()
    reader.feed_data(sent)
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert frame.fin and frame.data == (message.encode() if isinstance(message, str) else message)
    assert not reader.buffer  # nothing left over


def test_check_names_a_missing_protocol_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "_PROTOCOL_ATTRIBUTES", ("writes", "no_such_attribute"))
    with pytest.raises(RuntimeError, match=r"Protocol\.no_such_attribute"):
        compat.check()
