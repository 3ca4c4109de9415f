"""Request handlers: the built-ins, loading ``module:function`` and its lifecycle hooks.

The handler API (shapes, context, refusals, hooks) is documented in
:mod:`hopline.handler` and docs/handlers.md; :mod:`processor.calls` runs handlers.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from hopline.handler import inline

__all__ = [
    "BUILTIN_HANDLERS",
    "Handler",
    "HandlerError",
    "Hooks",
    "StartupError",
    "load_handler",
    "load_hooks",
]

Payload = str | bytes
Handler = Callable[..., Any]

WORDS_DELAY_ENV = "HOPLINE_WORDS_DELAY"


@inline
def append_world(payload: Payload) -> Payload:
    """The default: ``hello`` -> ``hello world``."""
    if isinstance(payload, bytes):
        return payload + b" world"
    return payload + " world"


@inline
def echo(payload: Payload) -> Payload:
    """Reply with the request unchanged."""
    return payload


@inline
def upper(payload: Payload) -> Payload:
    """Reply with the request in upper case."""
    return payload.upper()


async def words(payload: Payload) -> AsyncIterator[Payload]:
    """Stream the request back one word at a time (a demo of streamed replies).

    Waits ``HOPLINE_WORDS_DELAY`` seconds (default 0.1) before each word; every word
    but the last keeps its following space, so the chunks joined are the request.
    """
    delay = float(os.environ.get(WORDS_DELAY_ENV, "0.1"))
    parts: list[Any] = payload.split(b" " if isinstance(payload, bytes) else " ")
    space: Any = b" " if isinstance(payload, bytes) else " "
    for i, word in enumerate(parts):
        await asyncio.sleep(delay)
        yield word + space if i < len(parts) - 1 else word


BUILTIN_HANDLERS: dict[str, Handler] = {
    "world": append_world,
    "echo": echo,
    "upper": upper,
    "words": words,
}


class HandlerError(ValueError):
    """The handler spec names nothing callable."""


class StartupError(RuntimeError):
    """The handler module's ``startup()`` hook raised; the message says what happened."""


@dataclass(frozen=True, slots=True)
class Hooks:
    """The lifecycle hooks of a handler module (plain or async functions, no arguments)."""

    startup: Callable[[], Any] | None = None
    shutdown: Callable[[], Any] | None = None

    async def run_startup(self) -> None:
        """Run ``startup()`` once.

        Raises:
            StartupError: the hook raised (the original exception is chained).
        """
        if self.startup is None:
            return
        try:
            await _call_hook(self.startup)
        except Exception as exc:
            raise StartupError(f"handler startup failed: {type(exc).__name__}: {exc}") from exc

    async def run_shutdown(self) -> None:
        """Run ``shutdown()`` once; an exception is returned to the caller to log, not raised."""
        if self.shutdown is not None:
            await _call_hook(self.shutdown)


async def _call_hook(hook: Callable[[], Any]) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


def load_hooks(spec: str) -> Hooks:
    """The ``startup``/``shutdown`` functions of the module a handler spec names (if any).

    Call after :func:`load_handler` succeeded (the module is imported by then).
    """
    if spec in BUILTIN_HANDLERS:
        return Hooks()
    module = sys.modules.get(spec.partition(":")[0])
    if module is None:
        return Hooks()
    hooks = {name: getattr(module, name, None) for name in ("startup", "shutdown")}
    return Hooks(**{k: v for k, v in hooks.items() if callable(v)})


def _import(module_name: str) -> object:
    """Import ``module_name`` with the current directory first on the path, as ``python -m``.

    So ``hopline processor --handler mymod:fn`` finds ``./mymod.py`` whether hopline
    runs as the installed ``hopline`` script or as ``python -m hopline`` (``hopline up``
    starts its processors that way).
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def load_handler(spec: str) -> Handler:
    """Resolve a built-in name (``world``, ``echo``, ``upper``, ``words``) or ``module:function``.

    ``module`` is looked up in the current directory first, then the installed packages.

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
        module = _import(module_name)
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
