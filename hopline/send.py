"""``hopline send``: a one-shot client that sends messages and prints every outcome in order.

Built on the public client (:mod:`hopline.client.aio`): all messages leave at once on
one ``hopline.v1`` socket; the replies print on stdout in argument order, each as soon
as it and every reply before it are in. A streamed reply prints chunk by chunk as the
chunks arrive (then a newline). A message that failed prints one line on
stderr in its place, naming it: ``hopline: error: message 2 ("bad"): processor_error: ...``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from hopline.client.aio import Client, connect
from hopline.client.errors import ConnectError, ConnectionLost, RequestError

__all__ = ["SendError", "name_message", "send_messages"]

PREVIEW = 40  # characters of a message shown in an error line


class SendError(Exception):
    """The messages could not be sent; ``exit_code`` says how (see :mod:`hopline.runtime`)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def name_message(index: int, message: str) -> str:
    """How an error line names message ``index`` (1-based): ``message 2 ("bad")``."""
    if len(message) > PREVIEW:
        message = message[: PREVIEW - 1] + "…"
    return f"message {index} ({json.dumps(message, ensure_ascii=False)})"


async def send_messages(
    url: str, messages: list[str], timeout: float, token: str | None = None
) -> int:
    """Send every message at once, print each outcome in order; return how many failed.

    ``timeout`` bounds the opening handshake and each reply (all leave at once, so it
    bounds them all).

    Raises:
        InvalidURL: ``url`` is not a ws:// or wss:// URL (before any I/O).
        SendError: exit code 3 when the gateway cannot be reached.
    """
    try:
        client = await connect(url, token=token, timeout=timeout, open_timeout=timeout)
    except ConnectError as exc:
        raise SendError(str(exc), 3) from None
    failed = 0
    async with client:
        # One task per message, started in order (so they leave in order): each puts
        # the chunks of its reply in its queue, then _END or the exception that ended it.
        queues = [asyncio.Queue[Any]() for _ in messages]
        tasks = [
            asyncio.ensure_future(_collect(client, m, q))
            for m, q in zip(messages, queues, strict=True)
        ]
        try:
            for index, (message, queue) in enumerate(zip(messages, queues, strict=True), 1):
                printed = False
                while (item := await queue.get()) is not _END:
                    if isinstance(item, Exception):
                        failed += 1
                        if printed:
                            click.echo()
                        click.echo(
                            f"hopline: error: {name_message(index, message)}: {item}", err=True
                        )
                        break
                    click.echo(item, nl=False)  # a chunk of a streamed reply, as it arrives
                    printed = True
                else:
                    click.echo()
        finally:
            for task in tasks:
                task.cancel()
    return failed


_END: Any = object()


async def _collect(client: Client, message: str, queue: asyncio.Queue[Any]) -> None:
    """Stream the reply to ``message`` into ``queue`` (a plain reply is one chunk)."""
    try:
        async for chunk in client.stream(message):
            queue.put_nowait(chunk)
    except (RequestError, ConnectionLost) as exc:
        queue.put_nowait(exc)
    else:
        queue.put_nowait(_END)
