"""Issue 11: a plain-mode socket when the gateway's reply path is lost (through a TCP proxy).

Plain mode answers in request order, so one request whose reply can never come used to
hold every later answer on its socket until its deadline (30 s by default). Now every
request waiting on the lost path fails at once with ``unavailable``, the replies that had
already come back behind it follow in their places, and the same socket is served again
once the gateway has reconnected.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from gateway.server import Gateway
from hopline.wire.amqp import QueueTopology
from hopline.wire.envelope import decode_plain_reply
from hopline.wire.errors import ErrorCode, Failure
from tests.conftest import Stack, http_url, ws_url
from tests.faults.proxy import TCPProxy
from tests.helpers import eventually, http_get

HEARTBEAT = 2
DEADLINE = 30.0  # the default request timeout: what a held socket would wait for
# How soon the lost requests must be answered: a dropped connection is noticed at once,
# a silent one by the watchdog within about two heartbeats (+ slack for a busy 2-core box).
NOTICED_WITHIN = {"dropped": 3.0, "silent": 2 * HEARTBEAT + 3.0}


@pytest.mark.parametrize("fault", ["dropped", "silent"])
async def test_plain_socket_is_not_held_behind_a_lost_reply(
    stack: Stack, topology: QueueTopology, proxy: TCPProxy, fault: str
) -> None:
    """hold-1 and hold-3 wait in the handler, quick-2's reply waits behind hold-1; the reply
    connection is lost: the client gets unavailable, quick-2's reply, unavailable, at once and
    in order, and its next request after the reconnect is answered on the same socket."""
    gate = asyncio.Event()
    entered: list[str] = []

    async def hold_or_answer(payload: str | bytes) -> str:
        text = payload if isinstance(payload, str) else payload.decode()
        if text.startswith("hold"):
            entered.append(text)
            await gate.wait()  # released only after the test: these replies never return
        return f"{text} done"

    await stack.processor(hold_or_answer)  # straight to the broker: only the gateway is cut
    via_proxy = Stack(f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat={HEARTBEAT}", topology)
    try:
        gw = await via_proxy.gateway(request_timeout=DEADLINE)
        await via_proxy.batching_ready(gw)
        async with connect(ws_url(gw)) as ws:  # no subprotocol: plain mode
            await ws.send("hold-1")
            await eventually(lambda: entered == ["hold-1"], message="hold-1 in the handler")
            await ws.send("quick-2")
            await eventually(
                lambda: gw.broker.pending_requests == 1, message="quick-2 answered, held in order"
            )
            await ws.send("hold-3")
            await eventually(lambda: len(entered) == 2, message="hold-3 in the handler")

            loop = asyncio.get_running_loop()
            lost_at = loop.time()
            if fault == "dropped":
                proxy.reset()  # the connections close (a node killed, a reset)
            else:
                proxy.cut()  # nothing flows, sockets stay open (a partition)
            frames = []
            for _ in range(3):
                try:
                    frames.append(await asyncio.wait_for(ws.recv(), DEADLINE / 2))
                except TimeoutError:
                    pytest.fail(f"answers held for the lost request's deadline; got {frames}")
            answered_after = loop.time() - lost_at

            proxy.restore()
            await eventually(lambda: _healthy(gw), timeout=20, message="gateway reconnected")
            await ws.send("after-4")
            after = await asyncio.wait_for(ws.recv(), 10)
    finally:
        gate.set()
        await via_proxy.close()
    print(f"[{fault} reply path] 3 answers {answered_after:.2f} s after the loss")
    lost = "the connection to RabbitMQ was lost; the request may or may not have run"
    assert [decode_plain_reply(f) for f in frames] == [
        Failure(ErrorCode.UNAVAILABLE, lost),
        "quick-2 done",
        Failure(ErrorCode.UNAVAILABLE, lost),
    ]
    assert answered_after <= NOTICED_WITHIN[fault], "lost requests were not failed at once"
    assert after == "after-4 done"


async def _healthy(gw: Gateway) -> bool:
    return (await http_get(http_url(gw, "/health"))).status == 200
