"""The hopline batch format: many requests in one AMQP message (pure: no I/O).

One AMQP message per request costs the broker and both clients far more than the
request itself, so when hopline processors are present the gateway packs every
request it has ready into one message on the batch queue (see
:mod:`hopline.wire.amqp`) and the processor answers with one reply message holding
every reply, in the same order.

Body of a request batch (content type :data:`BATCH_CONTENT_TYPE`): a sequence of
items, each ``kind:u8 | length:u32 big-endian | payload``, where kind is
``0`` (text, UTF-8) or ``1`` (binary).

Body of a reply batch: one item per request item, in the same order, each
``status:u8 | length:u32 | payload``, where status is ``0`` (text reply),
``1`` (binary reply) or ``2`` (error; the payload is ``code:message`` in UTF-8).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BATCH_CONTENT_TYPE",
    "BatchFormatError",
    "ItemError",
    "decode_replies",
    "decode_requests",
    "encode_replies",
    "encode_requests",
]

BATCH_CONTENT_TYPE = "application/vnd.hopline.batch"

_HEADER = struct.Struct(">BI")
_TEXT, _BINARY, _ERROR = 0, 1, 2


class BatchFormatError(ValueError):
    """A batch body that does not follow the format above."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """One failed item of a reply batch."""

    code: str
    message: str


def _encode(items: Iterable[tuple[int, bytes]]) -> bytes:
    pack = _HEADER.pack
    parts: list[bytes] = []
    for kind, payload in items:
        parts.append(pack(kind, len(payload)))
        parts.append(payload)
    return b"".join(parts)


def _decode(body: bytes) -> list[tuple[int, bytes]]:
    view = memoryview(body)
    unpack = _HEADER.unpack_from
    size = _HEADER.size
    items: list[tuple[int, bytes]] = []
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < size:
            raise BatchFormatError("truncated item header")
        kind, length = unpack(view, offset)
        offset += size
        if end - offset < length:
            raise BatchFormatError("truncated item payload")
        items.append((kind, bytes(view[offset : offset + length])))
        offset += length
    return items


def encode_requests(payloads: Iterable[str | bytes]) -> bytes:
    """Pack request payloads (text as ``str``, binary as ``bytes``) into one body."""
    return _encode((_BINARY, p) if isinstance(p, bytes) else (_TEXT, p.encode()) for p in payloads)


def decode_requests(body: bytes) -> list[str | bytes]:
    """Unpack a request batch body.

    Raises:
        BatchFormatError: the body is truncated, has an unknown kind or bad UTF-8.
    """
    out: list[str | bytes] = []
    for kind, payload in _decode(body):
        if kind == _BINARY:
            out.append(payload)
        elif kind == _TEXT:
            try:
                out.append(payload.decode())
            except UnicodeDecodeError:
                raise BatchFormatError("text item is not valid UTF-8") from None
        else:
            raise BatchFormatError(f"unknown item kind {kind}")
    return out


def encode_replies(replies: Iterable[str | bytes | ItemError]) -> bytes:
    """Pack one reply (or :class:`ItemError`) per request item, in request order."""
    items: list[tuple[int, bytes]] = []
    for reply in replies:
        if isinstance(reply, ItemError):
            items.append((_ERROR, f"{reply.code}:{reply.message}".encode()))
        elif isinstance(reply, bytes):
            items.append((_BINARY, reply))
        else:
            items.append((_TEXT, reply.encode()))
    return _encode(items)


def decode_replies(body: bytes, expected: int) -> Sequence[str | bytes | ItemError]:
    """Unpack a reply batch body that must hold exactly ``expected`` items.

    Raises:
        BatchFormatError: the body is malformed or holds another number of items.
    """
    out: list[str | bytes | ItemError] = []
    for status, payload in _decode(body):
        if status == _BINARY:
            out.append(payload)
        elif status == _TEXT:
            out.append(payload.decode(errors="replace"))
        elif status == _ERROR:
            code, _, message = payload.decode(errors="replace").partition(":")
            out.append(ItemError(code, message))
        else:
            raise BatchFormatError(f"unknown reply status {status}")
    if len(out) != expected:
        raise BatchFormatError(f"reply batch holds {len(out)} items, expected {expected}")
    return out
