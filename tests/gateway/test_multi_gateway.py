"""Several gateways on one broker: every reply reaches the gateway and socket that asked."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from tests.conftest import Stack, ws_url


async def test_two_gateways_one_processor_no_cross_talk(stack: Stack) -> None:
    """Concurrent load through two gateways: each client gets exactly its own replies."""
    gateways = [await stack.gateway(), await stack.gateway()]
    await stack.processor("tests.sample_handlers:reverse")
    assert gateways[0].broker.reply_queue_name != gateways[1].broker.reply_queue_name

    async def client(gw_index: int, client_index: int) -> list[str]:
        tag = f"g{gw_index}c{client_index}"
        async with connect(ws_url(gateways[gw_index]), subprotocols=["hopline.v1"]) as ws:
            for i in range(50):
                await ws.send(json.dumps({"id": i, "data": f"{tag}-{i}"}))
            replies = {}
            for _ in range(50):
                envelope = json.loads(await ws.recv())
                replies[envelope["id"]] = envelope["data"]
            return [replies[i] for i in range(50)]

    results = await asyncio.gather(*(client(g, c) for g in range(2) for c in range(10)))
    for (g, c), replies in zip(((g, c) for g in range(2) for c in range(10)), results, strict=True):
        assert replies == [f"g{g}c{c}-{i}"[::-1] for i in range(50)]
    for gw in gateways:
        assert gw.metrics.total("hopline_dropped_replies_total") == 0
        assert gw.metrics.total("hopline_replies_total") == 500
