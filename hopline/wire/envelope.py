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

* **chunks** (``hopline.v1``, for streamed replies): ``{"id": <id>, "data": <chunk>,
  "more": true}`` is one part of a reply; the reply ends with an ordinary reply (or
  error) frame for the same id. A client that ignores ``more`` sees the last frame
  as the reply.

The server side (:func:`decode_envelope`, ``encode_envelope_*``, :func:`encode_plain_error`)
and the client side (:func:`encode_request`, :func:`request_template`,
:func:`decode_reply`, :func:`decode_plain_reply`) of the protocol both live here.

Error codes are the members of :class:`hopline.wire.errors.ErrorCode`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from hopline.wire.errors import ErrorCode, Failure, failure_from

__all__ = [
    "SUBPROTOCOL",
    "ClientId",
    "Envelope",
    "ProtocolError",
    "ReplyFrame",
    "decode_envelope",
    "decode_plain_reply",
    "decode_reply",
    "encode_envelope_chunk",
    "encode_envelope_error",
    "encode_envelope_reply",
    "encode_plain_error",
    "encode_request",
    "request_template",
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
_scan_once = json.JSONDecoder(parse_constant=_reject_constant).scan_once  # C scanner, no wrapper


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


def encode_envelope_chunk(client_id: ClientId, data: str) -> str:
    """Encode one chunk of a streamed ``hopline.v1`` reply (more frames follow for this id)."""
    return _dumps({"id": client_id, "data": data, "more": True})


# Client side


def encode_request(client_id: ClientId, data: str) -> str:
    """Encode one ``hopline.v1`` request: ``{"id": <client_id>, "data": <data>}``.

    Raises:
        ValueError: ``client_id`` is not a string, a finite number or None.
        TypeError: ``data`` is not a string.
    """
    if not isinstance(data, str):
        raise TypeError(f"hopline.v1 request data must be a str, not {type(data).__name__}")
    if isinstance(client_id, bool) or not isinstance(client_id, str | int | float | None):
        raise ValueError(f"a hopline.v1 id must be a string or a number, not {client_id!r}")
    if isinstance(client_id, float) and not math.isfinite(client_id):
        raise ValueError(f"a hopline.v1 id must be finite, not {client_id!r}")
    return _dumps({"id": client_id, "data": data})


def request_template(data_parts: list[str]) -> str:
    """A ``%`` template of :func:`encode_request` frames with an integer id, built once.

    ``request_template(parts) % (id, n, n, ...)`` (one ``n`` between two parts) equals
    ``encode_request(id, str(n).join(parts))``: a request costs one ``%`` instead of a
    JSON encoding (the load tester's hot path).
    """
    escaped = [_dumps(part)[1:-1].replace("%", "%%") for part in data_parts]
    return (
        _dumps({"id": 0, "data": ""})
        .replace("%", "%%")
        .replace('"id":0', '"id":%d', 1)
        .replace('"data":""', '"data":"' + "%d".join(escaped) + '"', 1)
    )


ReplyFrame = tuple[ClientId, str | Failure, bool]
"""A decoded ``hopline.v1`` reply frame: ``(id, data or Failure, more)``."""


def decode_reply(frame: str | bytes | bytearray) -> ReplyFrame:
    """Decode one ``hopline.v1`` frame from the gateway (a reply, chunk or error).

    Returns ``(id, data, more)`` for a reply (``more`` is True for a chunk that more
    frames follow) and ``(id, Failure, False)`` for an error frame. The id is None when
    the gateway could not read the request's id. Bytes (or a bytearray) are read as UTF-8.

    Raises:
        ProtocolError: not UTF-8 JSON, not an object, or no string ``data`` and no
            ``error`` object with a string ``code``.
    """
    try:
        text = frame if frame.__class__ is str else frame.decode()  # type: ignore[union-attr]
        try:
            obj, end = _scan_once(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            obj = _loads(text)  # whitespace around, or not JSON: the slow path decides
    except ValueError:
        raise ProtocolError("reply frame is not valid JSON") from None
    if obj.__class__ is not dict:
        raise ProtocolError("reply frame must be a JSON object")
    error = obj.get("error")
    if error is None:
        data = obj.get("data")
        if data.__class__ is not str:
            raise ProtocolError("reply frame has no string 'data' and no 'error'", obj.get("id"))
        return obj.get("id"), data, obj.get("more") is True
    return obj.get("id"), _failure(error, obj.get("id")), False


def decode_plain_reply(frame: str | bytes | bytearray) -> str | bytes | bytearray | Failure:
    """Decode one plain-mode frame: the reply itself, or the :class:`Failure` of an error frame.

    A frame (text or binary) that is exactly an error object
    ``{"error": {"code": ..., "message": ...}}`` is an error; any other frame is the
    reply, returned as given.
    """
    text = frame.__class__ is str
    if not frame.startswith('{"error":' if text else b'{"error":'):  # type: ignore[arg-type]
        return frame
    try:
        obj = _loads(frame if text else frame.decode())  # type: ignore[arg-type, union-attr]
        if len(obj) == 1:
            return _failure(obj["error"], None)
    except (ValueError, TypeError, KeyError, ProtocolError):
        pass
    return frame


def _failure(error: Any, client_id: ClientId) -> Failure:
    if error.__class__ is not dict or error.get("code").__class__ is not str:
        raise ProtocolError("'error' must be an object with a string 'code'", client_id)
    message = error.get("message")
    return failure_from(error["code"], message if isinstance(message, str) else "")
