"""``hopline send``: a one-shot client that sends messages and prints the replies."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from hopline.wire.envelope import SUBPROTOCOL

__all__ = ["SendError", "send_messages"]


class SendError(Exception):
    """A request that failed; ``exit_code`` says how (see :mod:`hopline.exits`)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def send_messages(
    url: str, messages: list[str], timeout: float, token: str | None = None
) -> list[str]:
    """Send every message at once over one ``hopline.v1`` socket; return the replies in order.

    Raises:
        SendError: exit code 3 if the gateway can't be reached, 1 for an error
            reply, a timeout or a dropped connection.
    """
    try:
        async with asyncio.timeout(timeout):
            headers = {"Authorization": f"Bearer {token}"} if token else None
            async with connect(
                url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                additional_headers=headers,
            ) as ws:
                for index, message in enumerate(messages):
                    await ws.send(json.dumps({"id": index, "data": message}))
                replies: dict[int, str] = {}
                while len(replies) < len(messages):
                    envelope = json.loads(await ws.recv())
                    if "error" in envelope:
                        error = envelope["error"]
                        raise SendError(f"{error['code']}: {error['message']}", 1)
                    replies[envelope["id"]] = envelope["data"]
                return [replies[i] for i in range(len(messages))]
    except TimeoutError:
        raise SendError(f"no reply from {url} within {timeout:g} s", 1) from None
    except (OSError, InvalidURI, InvalidHandshake) as exc:
        raise SendError(f"cannot connect to {url}: {exc}", 3) from None
    except WebSocketException as exc:
        raise SendError(f"connection to {url} failed: {exc}", 1) from None
