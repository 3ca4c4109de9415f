"""Request handlers: the built-ins and loading ``module:function``.

A handler takes the request payload (``str`` for text, ``bytes`` for binary) and
returns the reply (``str`` or ``bytes``); it may be a plain function or a
coroutine function. An exception becomes a ``processor_error`` reply.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["BUILTIN_HANDLERS", "Handler", "HandlerError", "load_handler"]

Payload = str | bytes
Handler = Callable[[Payload], Payload | Awaitable[Payload]]


def append_world(payload: Payload) -> Payload:
    """The default: ``hello`` -> ``hello world``."""
    if isinstance(payload, bytes):
        return payload + b" world"
    return payload + " world"


def echo(payload: Payload) -> Payload:
    """Reply with the request unchanged."""
    return payload


def upper(payload: Payload) -> Payload:
    """Reply with the request in upper case."""
    return payload.upper()


BUILTIN_HANDLERS: dict[str, Handler] = {"world": append_world, "echo": echo, "upper": upper}


class HandlerError(ValueError):
    """The handler spec names nothing callable."""


def load_handler(spec: str) -> Handler:
    """Resolve a built-in name (``world``, ``echo``, ``upper``) or ``module:function``.

    Raises:
        HandlerError: unknown built-in, module that fails to import, missing or
            non-callable attribute.
    """
    if spec in BUILTIN_HANDLERS:
        return BUILTIN_HANDLERS[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        names = ", ".join(BUILTIN_HANDLERS)
        raise HandlerError(f"handler {spec!r} is neither a built-in ({names}) nor module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(f"cannot import handler module {module_name!r}: {exc}") from None
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise HandlerError(f"{spec!r} is not callable")
    return obj  # type: ignore[return-value]


def is_async(handler: Handler) -> bool:
    """Whether calling ``handler`` returns an awaitable."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )
