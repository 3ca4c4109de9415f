"""What a load test sends and what it accepts back (pure: no I/O).

The ``--message`` text may contain ``{n}``, replaced by the request's sequence
number on its connection, so that every reply can be checked against its own
request (a reply matched to the wrong request fails verification). Frames are
built from byte templates prepared once, so encoding a request is one ``%``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hopline.wire.envelope import request_template

__all__ = ["EXPECT_SUFFIX", "Codec", "Expect", "Protocol"]

Protocol = Literal["hopline.v1", "plain"]
Expect = Literal["world", "echo", "none"]

EXPECT_SUFFIX: dict[str, str] = {"world": " world", "echo": ""}


def _escape_percent(text: str) -> str:
    return text.replace("%", "%%")


@dataclass(frozen=True, slots=True)
class Codec:
    """Request frames and expected replies for one ``--message`` and ``--expect``.

    Attributes:
        protocol: ``hopline.v1`` (JSON envelopes, id = sequence number) or ``plain``.
        expect: ``world`` (reply is the data plus `` world``), ``echo`` (the data
            unchanged) or ``none`` (any reply that is not an error is correct).
    """

    protocol: Protocol
    expect: Expect
    message: str
    _frame: bytes
    _frame_args: int
    _data: str
    _data_args: int

    @classmethod
    def build(cls, protocol: Protocol, expect: Expect, message: str) -> Codec:
        """Prepare the templates for ``message`` (``{n}`` = sequence number)."""
        parts = message.split("{n}")
        data = "%d".join(_escape_percent(p) for p in parts)
        if protocol == "hopline.v1":
            frame, frame_args = request_template(parts), len(parts)
        else:
            frame, frame_args = data, len(parts) - 1
        return cls(protocol, expect, message, frame.encode(), frame_args, data, len(parts) - 1)

    def frame(self, seq: int) -> bytes:
        """The text frame (UTF-8 bytes) of request ``seq``."""
        n = self._frame_args
        if n == 0:
            return self._frame
        return self._frame % ((seq,) * n)

    def data(self, seq: int) -> str:
        """The data of request ``seq`` (what a handler receives)."""
        n = self._data_args
        return self._data % ((seq,) * n) if n else self._data

    def expected(self, seq: int) -> str | None:
        """The reply data request ``seq`` must get, ``None`` when anything goes."""
        if self.expect == "none":
            return None
        return self.data(seq) + EXPECT_SUFFIX[self.expect]
