"""Request frames and expected replies (no network)."""

from __future__ import annotations

import json

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from loadtest.connection import text_frame
from loadtest.messages import Codec


def test_v1_frames_are_envelopes_with_the_sequence_number() -> None:
    """hopline.v1 frames are valid JSON envelopes; {n} becomes the id."""
    codec = Codec.build("hopline.v1", "world", 'héllo "{n}" 100%')
    assert json.loads(codec.frame(7)) == {"id": 7, "data": 'héllo "7" 100%'}
    assert codec.expected(7) == 'héllo "7" 100% world'


def test_plain_frames_are_the_data() -> None:
    """Plain frames carry the data itself; echo expects it unchanged."""
    codec = Codec.build("plain", "echo", "n={n}")
    assert codec.frame(3) == b"n=3"
    assert codec.expected(3) == "n=3"


def test_constant_message_and_expect_none() -> None:
    """A message without {n} is sent verbatim; expect none accepts anything."""
    codec = Codec.build("hopline.v1", "none", "ping")
    assert json.loads(codec.frame(1)) == {"id": 1, "data": "ping"}
    assert codec.expected(1) is None


def test_text_frame_parses_as_websockets_reads_it() -> None:
    """The fast frame encoder writes masked text frames websockets' server parser accepts."""
    for size in (0, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (size // 256) + b"a" * (size % 256)
        reader = StreamReader()
        reader.feed_data(text_frame(payload))
        parser = Frame.parse(reader.read_exact, mask=True)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frame = done.value.value
        assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload), size
