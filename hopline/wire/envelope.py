"""The client-facing wire protocol of the gateway (pure: no I/O).

Two modes share one ``/ws`` endpoint:

* **plain** (no subprotocol): every text frame is one request and gets one text
  frame back; every binary frame gets one binary frame back. Replies come back in
  the order the requests were sent. A failed request gets one *text* error frame::

      {"error": {"code": "timeout", "message": "no reply within 30.0 s"}}

* **hopline.v1** (negotiated with ``Sec-WebSocket-Protocol: hopline.v1``): every
  text frame is a JSON envelope ``{"id": <id>, "data": <string>}`` where ``id`` is
  any JSON string or number chosen by the client (echoed, never used for routing).
  Replies may arrive out of order, as ``{"id": <id>, "data": <string>}`` or
  ``{"id": <id>, "error": {"code": <code>, "message": <string>}}``. A malformed
  envelope gets a ``bad_request`` error whose ``id`` is the client's id when it
  could be read, else ``null``; the socket stays open.

Error codes are the members of :class:`hopline.wire.errors.ErrorCode`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from hopline.wire.errors import ErrorCode

__all__ = [
    "SUBPROTOCOL",
    "Envelope",
    "ProtocolError",
    "decode_envelope",
    "encode_envelope_error",
    "encode_envelope_reply",
    "encode_plain_error",
]

SUBPROTOCOL = "hopline.v1"

ClientId = str | int | float | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded ``hopline.v1`` request."""

    id: ClientId
    data: str


class ProtocolError(ValueError):
    """A frame that is not a valid ``hopline.v1`` envelope.

    ``client_id`` is the id found in the frame, if any, so the error reply can echo it.
    """

    def __init__(self, message: str, client_id: ClientId = None) -> None:
        super().__init__(message)
        self.client_id = client_id


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON doesn't


_loads = json.JSONDecoder(parse_constant=_reject_constant).decode


def decode_envelope(frame: str | bytes) -> Envelope:
    """Decode one ``hopline.v1`` request frame.

    Raises:
        ProtocolError: the frame is binary, not JSON (``NaN``/``Infinity`` included),
            not an object, or lacks a string ``data`` or a string/finite-number ``id``.
    """
    if isinstance(frame, bytes):
        raise ProtocolError("hopline.v1 expects text frames holding JSON envelopes")
    try:
        obj: Any = _loads(frame)
    except ValueError:
        raise ProtocolError("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("envelope must be a JSON object")
    client_id = obj.get("id")
    if client_id is not None and (
        isinstance(client_id, bool)
        or not isinstance(client_id, str | int | float)
        or (isinstance(client_id, float) and not math.isfinite(client_id))
    ):
        raise ProtocolError("'id' must be a string or a number")
    if "id" not in obj:
        raise ProtocolError("envelope has no 'id'")
    data = obj.get("data")
    if not isinstance(data, str):
        raise ProtocolError("'data' must be a string", client_id)
    return Envelope(client_id, data)


def encode_envelope_reply(client_id: ClientId, data: str) -> str:
    """Encode a successful ``hopline.v1`` reply."""
    return _dumps({"id": client_id, "data": data})


def encode_envelope_error(client_id: ClientId, code: ErrorCode, message: str) -> str:
    """Encode a ``hopline.v1`` error reply."""
    return _dumps({"id": client_id, "error": {"code": code.value, "message": message}})


def encode_plain_error(code: ErrorCode, message: str) -> str:
    """Encode the text error frame of plain mode."""
    return _dumps({"error": {"code": code.value, "message": message}})
