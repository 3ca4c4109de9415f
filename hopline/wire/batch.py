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

Streamed replies (a handler that yields chunks) travel in **partial reply batches**
(content type :data:`PARTIAL_CONTENT_TYPE`), sent only to a requester that asked for
them with the :data:`~hopline.wire.amqp.STREAM_HEADER` request header; anyone else
gets one ordinary reply with the chunks joined. Contract:

* A partial reply batch has the correlation id of the request message (the batch's,
  or the plain request's) and goes to its ``reply_to``. Its body is a sequence of
  chunks of one or more of the message's requests, each
  ``index:u32 | seq:u32 | kind:u8 | length:u32 | payload``: ``index`` is the
  request's position in its batch (0 for a plain message), ``seq`` the chunk's
  number within that request's stream (0, 1, 2, ... without gaps), kind ``0`` text
  or ``1`` binary, plus ``8`` when it is the request's **last** (``8`` text, ``9``
  binary, ``10`` an error ``code:message``; ``seq`` = chunks sent before it). Chunks
  of one request appear in order; the processor gathers
  every chunk produced in one event-loop tick (and while the previous partial
  message of the same request message awaits its confirm) into one message.
* Every chunk but the last of a request travels in partial batches; the **last**
  chunk is that request's item of the ordinary final reply (batch or plain), which
  comes after all of its partial batches (same channel, same queue: AMQP keeps the
  order). An error mid-stream is the item's ordinary error reply. So a requester
  that ignores partial batches sees the last chunk as the reply; non-streamed
  replies are unchanged byte for byte.
* **Early answers**: a request of a batch that ends while others of its message still
  run (a streamed one or not) may get its last chunk (its whole reply, or its error)
  in a partial batch at once, so a quick request is not held back by a slow one
  packed with it. The final reply batch still holds every item; the requester
  ignores those already answered.
* Partial batches, and the final reply of a message that sent any, carry
  :data:`~hopline.wire.amqp.RUN_HEADER` (one value per handling of the message): a
  request redelivered after its processor died starts a new run at ``seq`` 0, so
  a requester that already forwarded chunks of another run must end the request
  with an error instead of mixing two runs (never a truncated success).
* Partial batches carry :data:`~hopline.wire.amqp.CONTROL_HEADER`, the processor's
  control queue: publishing a **cancel** message there (content type
  :data:`CANCEL_CONTENT_TYPE`, the request message's correlation id, body
  :func:`encode_cancel` of the item indexes, empty for all) closes the handlers'
  generators of those requests (the client went away). Their final reply items are
  ``processor_error`` and may be ignored.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CANCEL_CONTENT_TYPE",
    "PARTIAL_CONTENT_TYPE",
    "BatchFormatError",
    "Chunk",
    "ItemError",
    "decode_cancel",
    "decode_partials",
    "decode_replies",
    "decode_requests",
    "encode_cancel",
    "encode_partials",
    "encode_replies",
    "encode_requests",
]

BATCH_CONTENT_TYPE = "application/vnd.hopline.batch"
PARTIAL_CONTENT_TYPE = "application/vnd.hopline.partial"
CANCEL_CONTENT_TYPE = "application/vnd.hopline.cancel"

_HEADER = struct.Struct(">BI")
_LAST = 8  # added to a chunk kind: the request's last chunk (or whole reply), sent early
_CHUNK_HEADER = struct.Struct(">IIBI")
_INDEX = struct.Struct(">I")
_TEXT, _BINARY, _ERROR = 0, 1, 2


class BatchFormatError(ValueError):
    """A batch body that does not follow the format above."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """One failed item of a reply batch."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a streamed reply: request ``index`` in its message, chunk number ``seq``.

    With ``last`` it is the request's whole remaining answer, sent early (see the module
    docstring): its final chunk or reply, or an :class:`ItemError`; ``seq`` is then the
    number of chunks sent before it.
    """

    index: int
    seq: int
    data: str | bytes | ItemError
    last: bool = False


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


def encode_partials(chunks: Iterable[Chunk]) -> bytes:
    """Pack streamed chunks (of one request message, in order) into a partial batch body."""
    pack = _CHUNK_HEADER.pack
    parts: list[bytes] = []
    for chunk in chunks:
        data = chunk.data
        last = _LAST if chunk.last else 0
        if isinstance(data, bytes):
            parts.append(pack(chunk.index, chunk.seq, _BINARY + last, len(data)))
            parts.append(data)
        elif isinstance(data, ItemError):
            if not chunk.last:
                raise ValueError("only the last chunk of a request may be an error")
            encoded = f"{data.code}:{data.message}".encode()
            parts.append(pack(chunk.index, chunk.seq, _ERROR + _LAST, len(encoded)))
            parts.append(encoded)
        else:
            encoded = data.encode()
            parts.append(pack(chunk.index, chunk.seq, _TEXT + last, len(encoded)))
            parts.append(encoded)
    return b"".join(parts)


def decode_partials(body: bytes) -> list[Chunk]:
    """Unpack a partial batch body (text chunks as ``str``, binary as ``bytes``).

    Raises:
        BatchFormatError: the body is truncated or has an unknown chunk kind.
    """
    view = memoryview(body)
    unpack = _CHUNK_HEADER.unpack_from
    size = _CHUNK_HEADER.size
    out: list[Chunk] = []
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < size:
            raise BatchFormatError("truncated chunk header")
        index, seq, kind, length = unpack(view, offset)
        offset += size
        if end - offset < length:
            raise BatchFormatError("truncated chunk payload")
        payload = bytes(view[offset : offset + length])
        offset += length
        last = kind >= _LAST
        base = kind - _LAST if last else kind
        if base == _TEXT:
            out.append(Chunk(index, seq, payload.decode(errors="replace"), last))
        elif base == _BINARY:
            out.append(Chunk(index, seq, payload, last))
        elif base == _ERROR and last:
            code, _, message = payload.decode(errors="replace").partition(":")
            out.append(Chunk(index, seq, ItemError(code, message), True))
        else:
            raise BatchFormatError(f"unknown chunk kind {kind}")
    return out


def encode_cancel(indexes: Iterable[int]) -> bytes:
    """The body of a cancel message: the request indexes to cancel (none: every request)."""
    return b"".join(_INDEX.pack(i) for i in indexes)


def decode_cancel(body: bytes) -> list[int]:
    """The request indexes of a cancel message body (empty: every request).

    Raises:
        BatchFormatError: the body is not a whole number of 4-byte indexes.
    """
    if len(body) % _INDEX.size:
        raise BatchFormatError("cancel body is not a sequence of u32 indexes")
    return [i for (i,) in _INDEX.iter_unpack(body)]
