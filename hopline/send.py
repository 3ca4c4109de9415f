"""``hopline send``: a one-shot client that sends messages and prints every outcome in order.

Built on the public client (:mod:`hopline.client.aio`): all messages leave at once on
one ``hopline.v1`` socket; the replies print on stdout in argument order, each as soon
as it and every reply before it are in. A message that failed prints one line on
stderr in its place, naming it: ``hopline: error: message 2 ("bad"): processor_error: ...``.
"""

from __future__ import annotations

import json

import click

from hopline.client.aio import connect
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
        futures = []
        for message in messages:
            try:
                futures.append(await client.submit(message))
            except ConnectionLost:
                break  # the rest never left: reported below as lost
        for index, message in enumerate(messages, 1):
            try:
                if index > len(futures):
                    raise ConnectionLost(client.close_reason or "connection lost")
                reply = await futures[index - 1]
            except (RequestError, ConnectionLost) as exc:
                failed += 1
                click.echo(f"hopline: error: {name_message(index, message)}: {exc}", err=True)
            else:
                click.echo(reply)
    return failed
