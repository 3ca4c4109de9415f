"""Calling the handler: its shape, the thread pool, refusals, streamed replies.

Contract (the user-facing side is :mod:`hopline.handler`):

* A plain function runs in a thread pool; a coroutine function, an async generator
  function, or a plain function marked :func:`hopline.handler.inline` run on the
  event loop; a plain generator's ``next()`` calls run in the pool (on the loop
  when marked inline). The shape is read once, from the function (or the
  ``__call__`` of a callable object); a plain function that returns an awaitable
  or a generator is handled too.
* At most ``concurrency`` calls (streams included, from their first to their last
  chunk) run at once; inline calls run one after another and take no slot. The
  pool has ``ABANDONED_FACTOR x concurrency`` threads, so calls abandoned at their
  deadline (a thread cannot be stopped; the result is dropped and
  :attr:`Context.cancelled <hopline.handler.Context.cancelled>` set) do not take
  the threads of the calls that follow, up to that many.
* A call ends with its reply (``str``/``bytes``) or an
  :class:`~hopline.wire.batch.ItemError`: the code of a
  :class:`~hopline.handler.Refusal`, else ``processor_error``. Cancelling the
  awaiting task (deadline, shutdown) cancels an async handler and closes a
  generator (``aclose()``/``close()``; a plain generator's ``next()`` running in
  a thread finishes first).
* Streams: every chunk but the last goes to the :class:`Streams` sink as soon as the
  next one exists (one chunk of look-ahead: only then is a chunk known not to be the
  last); the last chunk is the call's reply. Without a sink the chunks are joined
  (all ``str``: a ``str``; else ``bytes``, text as UTF-8).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hopline.handler import INLINE_ATTRIBUTE, Context, Refusal
from hopline.wire.batch import ItemError
from hopline.wire.errors import ErrorCode

__all__ = ["ABANDONED_FACTOR", "Caller", "Shape", "Streams", "shape_of"]

ABANDONED_FACTOR = 4

Kind = Literal["inline", "sync", "async", "gen", "agen"]
Reply = str | bytes | ItemError


@dataclass(frozen=True, slots=True)
class Shape:
    """How a handler is called: its kind, and whether it takes a :class:`Context`."""

    kind: Kind
    takes_context: bool
    inline: bool


def shape_of(handler: Callable[..., Any]) -> Shape:
    """Read a handler's shape from its function (or its ``__call__``) and signature."""
    target: Any = handler
    if not (inspect.isfunction(handler) or inspect.ismethod(handler)) and not isinstance(
        handler, type
    ):
        call = getattr(handler, "__call__", None)  # noqa: B004
        if call is not None and not inspect.isbuiltin(call):
            target = call
    inline = bool(
        getattr(handler, INLINE_ATTRIBUTE, False) or getattr(target, INLINE_ATTRIBUTE, False)
    )
    kind: Kind
    if inspect.isasyncgenfunction(target) or inspect.isasyncgenfunction(handler):
        kind = "agen"
    elif inspect.isgeneratorfunction(target) or inspect.isgeneratorfunction(handler):
        kind = "gen"
    elif inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(handler):
        kind = "async"
    else:
        kind = "inline" if inline else "sync"
    return Shape(kind, _takes_context(handler), inline)


def _takes_context(handler: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: one argument
        return False
    positional = 0
    for p in parameters:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class Streams(Protocol):
    """Where the chunks of streamed replies go (see :class:`processor.streams.MessageStreams`)."""

    def emit(self, index: int, seq: int, data: str | bytes) -> None:
        """Send chunk ``seq`` of request ``index`` (not its last chunk)."""

    def register(self, index: int, task: asyncio.Task[Any]) -> None:
        """Make request ``index``'s stream cancellable by the client (cancel messages)."""

    def unregister(self, index: int) -> None:
        """Forget request ``index``'s stream."""


class Caller:
    """Calls one handler; see the module docstring. Owns the thread pool (see :meth:`close`)."""

    def __init__(self, handler: Callable[..., Any], concurrency: int) -> None:
        self.handler = handler
        self.shape = shape_of(handler)
        self.concurrency = concurrency
        self.calls = 0
        self.failures = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._abandoned: set[Future[Any]] = set()  # thread calls given up while running

    @property
    def inline(self) -> bool:
        """Whether calls run one after another on the loop (a quick plain function)."""
        return self.shape.kind == "inline"

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The thread pool, created on first use."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=ABANDONED_FACTOR * self.concurrency,
                thread_name_prefix="hopline-handler",
            )
        return self._pool

    def close(self) -> None:
        """Let the pool's threads end once their calls return (abandoned ones are not waited)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def abandoned_running(self) -> int:
        """Calls given up (deadline, shutdown) whose thread is still running them.

        The interpreter waits for every pool thread at exit; the ``processor`` command
        exits without waiting when this is not 0 (nobody wants those results).
        """
        self._abandoned = {f for f in self._abandoned if not f.done()}
        return len(self._abandoned)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the pool; if the caller gives up while it runs, it is abandoned."""
        future = self.pool.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # already running: cannot be stopped
                self._abandoned.add(future)
            raise

    async def run(
        self,
        payload: str | bytes,
        ctx: Context | None,
        index: int,
        streams: Streams | None,
        expired: Callable[[], bool],
    ) -> Reply | None:
        """One call in a slot; None when ``expired()`` is already true once the slot is free."""
        async with self._slots:
            if expired():
                return None
            try:
                return await self.call(payload, ctx, index, streams)
            except asyncio.CancelledError:
                if ctx is not None:
                    ctx.cancelled.set()
                raise

    async def call(
        self, payload: str | bytes, ctx: Context | None, index: int, streams: Streams | None
    ) -> Reply:
        """Call the handler once (no slot taken) and turn what happens into a reply."""
        self.calls += 1
        args = (payload, ctx) if self.shape.takes_context else (payload,)
        try:
            if self.shape.kind == "sync":
                result = await self._in_thread(self.handler, *args)
            else:  # a coroutine, or a generator (creating one runs none of its code)
                result = self.handler(*args)
            return await self._settle(result, index, streams)
        except Exception as exc:
            return self._failed(exc)

    def call_inline(self, payload: str | bytes, ctx: Context | None) -> Reply | Awaitable[Reply]:
        """An inline call: the reply, or an awaitable of it when the handler streamed."""
        self.calls += 1
        try:
            result = self.handler(*((payload, ctx) if self.shape.takes_context else (payload,)))
        except Exception as exc:
            return self._failed(exc)
        if isinstance(result, str | bytes):
            return result
        return self._settle_safely(result)

    async def _settle_safely(self, result: Any) -> Reply:
        try:
            return await self._settle(result, 0, None)
        except Exception as exc:
            return self._failed(exc)

    async def _settle(self, result: Any, index: int, streams: Streams | None) -> Reply:
        """Await an awaitable, pump a generator, check the type of what is left."""
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, AsyncGenerator | Generator):
            result = await self._stream(result, index, streams)
        if isinstance(result, str | bytes):
            return result
        self.failures += 1
        return ItemError(
            ErrorCode.PROCESSOR_ERROR.value,
            f"handler returned {type(result).__name__}, expected str or bytes",
        )

    def _failed(self, exc: Exception) -> ItemError:
        self.failures += 1
        if isinstance(exc, Refusal):
            return ItemError(exc.code.value, str(exc))
        return ItemError(ErrorCode.PROCESSOR_ERROR.value, f"{type(exc).__name__}: {exc}")

    # Streams

    async def _stream(
        self,
        gen: AsyncGenerator[Any, None] | Generator[Any, None, None],
        index: int,
        streams: Streams | None,
    ) -> str | bytes:
        """Pump ``gen`` in a task of its own, so a cancel message can end it alone."""
        collect = _Collector(index, streams)
        if isinstance(gen, AsyncGenerator):
            task = asyncio.ensure_future(_pump_async(gen, collect))
        else:
            pool = None if self.shape.inline else self.pool
            task = asyncio.ensure_future(_pump_sync(gen, collect, pool, self._abandoned))
        if streams is None:
            return await task
        streams.register(index, task)
        try:
            return await task
        except Exception:
            collect.release()  # the chunk held back was not the last: the error is
            raise
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise _ClientGone() from None  # the task alone was cancelled: a cancel message
            raise
        finally:
            streams.unregister(index)


class _ClientGone(Refusal):
    """The requester cancelled the stream (its client went away)."""

    code = ErrorCode.PROCESSOR_ERROR

    def __init__(self) -> None:
        super().__init__("stream cancelled: the client went away")


_NOTHING: Any = object()


class _Collector:
    """Chunks of one stream: to the sink with one chunk of look-ahead, or joined."""

    __slots__ = ("held", "index", "parts", "seq", "streams")

    def __init__(self, index: int, streams: Streams | None) -> None:
        self.index = index
        self.streams = streams
        self.held: Any = _NOTHING
        self.seq = 0
        self.parts: list[str | bytes] = []

    def add(self, chunk: Any) -> None:
        if not isinstance(chunk, str | bytes):
            raise TypeError(f"handler yielded {type(chunk).__name__}, expected str or bytes")
        if self.streams is None:
            self.parts.append(chunk)
            return
        if self.held is not _NOTHING:
            self.streams.emit(self.index, self.seq, self.held)
            self.seq += 1
        self.held = chunk

    def release(self) -> None:
        """Send the chunk held back (the stream ended with an error, which comes last)."""
        if self.streams is not None and self.held is not _NOTHING:
            self.streams.emit(self.index, self.seq, self.held)
            self.seq += 1
            self.held = _NOTHING

    def result(self) -> str | bytes:
        if self.streams is not None:
            return "" if self.held is _NOTHING else self.held
        parts = self.parts
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(p.encode() if isinstance(p, str) else p for p in parts)


async def _pump_async(gen: AsyncGenerator[Any, None], collect: _Collector) -> str | bytes:
    try:
        async for chunk in gen:
            collect.add(chunk)
    finally:
        await gen.aclose()
    return collect.result()


def _next(gen: Generator[Any, None, None]) -> tuple[bool, Any]:
    """``(True, chunk)`` or ``(False, None)`` at the end (StopIteration cannot cross a Future)."""
    try:
        return True, next(gen)
    except StopIteration:
        return False, None


async def _pump_sync(
    gen: Generator[Any, None, None],
    collect: _Collector,
    pool: ThreadPoolExecutor | None,
    abandoned: set[Future[Any]],
) -> str | bytes:
    if pool is None:
        try:
            for chunk in gen:
                collect.add(chunk)
                await asyncio.sleep(0)  # an inline generator still lets others run
        finally:
            gen.close()
        return collect.result()
    while True:
        future: Future[tuple[bool, Any]] = pool.submit(_next, gen)
        try:
            more, chunk = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # A running next() cannot be stopped: close the generator once it returns.
            future.add_done_callback(lambda _: gen.close())
            if not future.done():
                abandoned.add(future)
            raise
        if not more:
            return collect.result()
        try:
            collect.add(chunk)
        except TypeError:
            pool.submit(gen.close)
            raise
