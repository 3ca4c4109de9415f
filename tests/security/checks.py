"""Checks shared by the abuse tests: a bystander client is still served normally."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from gateway.server import Gateway
from tests.conftest import ws_url

__all__ = ["assert_serves"]


async def assert_serves(
    gw: Gateway, suffix: str = " world", tag: str = "bystander", timeout: float = 5.0
) -> None:
    """A fresh client gets the right replies in both modes.

    ``suffix`` is what the running handler appends: " world" for the default, "" for echo.
    """
    async with asyncio.timeout(timeout):
        async with connect(ws_url(gw)) as ws:
            await ws.send(f"{tag} plain")
            assert await ws.recv() == f"{tag} plain{suffix}"
        async with connect(ws_url(gw), subprotocols=["hopline.v1"]) as ws:
            await ws.send(json.dumps({"id": tag, "data": "v1"}))
            assert json.loads(await ws.recv()) == {"id": tag, "data": f"v1{suffix}"}
