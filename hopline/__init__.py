"""hopline: request/reply messaging over WebSockets and RabbitMQ.

The public Python client (see ``docs/client.md``)::

    from hopline import connect

    async with connect("ws://localhost:8000/ws") as client:
        print(await client.request("hello"))

The handler API (``from hopline import BadRequest``, see :mod:`hopline.handler` and
``docs/handlers.md``) is exported here too.

Names are loaded on first use (module ``__getattr__``), so ``import hopline`` and the
``hopline`` command stay cheap: websockets is imported only when the client is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hopline.client.aio import Client, connect
    from hopline.client.errors import (
        ConnectError,
        ConnectionLost,
        HoplineError,
        InvalidURL,
        RequestError,
    )
    from hopline.handler import BadRequest, Busy, Context, Refusal, inline
    from hopline.wire.errors import ErrorCode

__all__ = [
    "BadRequest",
    "Busy",
    "Client",
    "ConnectError",
    "ConnectionLost",
    "Context",
    "ErrorCode",
    "HoplineError",
    "InvalidURL",
    "Refusal",
    "RequestError",
    "connect",
    "inline",
]

_EXPORTS = {
    "Client": "hopline.client.aio",
    "connect": "hopline.client.aio",
    "ConnectError": "hopline.client.errors",
    "ConnectionLost": "hopline.client.errors",
    "HoplineError": "hopline.client.errors",
    "InvalidURL": "hopline.client.errors",
    "RequestError": "hopline.client.errors",
    "ErrorCode": "hopline.wire.errors",
    "BadRequest": "hopline.handler",
    "Busy": "hopline.handler",
    "Context": "hopline.handler",
    "Refusal": "hopline.handler",
    "inline": "hopline.handler",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hopline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
