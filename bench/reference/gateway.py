"""The original design's API, kept minimal and faithful, as the benchmark's baseline.

FastAPI/uvicorn WebSocket endpoint at ``/ws``; aio-pika with default settings
(``channel()`` has publisher confirms on); requests published persistent to a
durable input queue with ``reply_to`` = one shared durable output queue; replies
matched by correlation id through a dict of futures; each socket handled one
message at a time: read, publish, await the reply, send.

Run: ``python bench/reference/gateway.py --port 8123 [--rabbitmq-url ...] [--prefix ref]``.
Not part of hopline: it exists only so ``bench/run.py`` can measure against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import uvicorn
from aio_pika.abc import AbstractIncomingMessage
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

log = logging.getLogger("reference.gateway")


class RabbitMQClient:
    """Publish a request and await its reply on the shared output queue."""

    def __init__(self, url: str, input_queue: str, output_queue: str) -> None:
        self.url = url
        self.input_queue = input_queue
        self.output_queue = output_queue
        self.futures: dict[str, asyncio.Future[str]] = {}
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None

    async def connect(self) -> None:
        """Connect, declare both durable queues, consume the output queue."""
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel()
        await self.channel.declare_queue(self.input_queue, durable=True)
        queue = await self.channel.declare_queue(self.output_queue, durable=True)
        await queue.consume(self.on_response)

    async def close(self) -> None:
        """Close the connection."""
        if self.connection is not None:
            await self.connection.close()

    async def on_response(self, message: AbstractIncomingMessage) -> None:
        """Resolve the future waiting for this correlation id."""
        async with message.process():
            future = self.futures.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(message.body.decode())

    async def send_and_wait(self, text: str, timeout: float = 30.0) -> str:
        """Publish ``text`` (persistent) and wait for its reply."""
        assert self.channel is not None
        correlation_id = str(uuid.uuid4())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.futures[correlation_id] = future
        try:
            await self.channel.default_exchange.publish(
                aio_pika.Message(
                    body=text.encode(),
                    correlation_id=correlation_id,
                    reply_to=self.output_queue,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=self.input_queue,
            )
            return await asyncio.wait_for(future, timeout)
        finally:
            self.futures.pop(correlation_id, None)


def create_app(client: RabbitMQClient) -> FastAPI:
    """The FastAPI application: ``/ws`` and ``/health``."""
    state = {"active_websockets": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await client.connect()
        yield
        await client.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {
            "status": "healthy",
            "active_websockets": state["active_websockets"],
            "pending_requests": len(client.futures),
        }

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        state["active_websockets"] += 1
        try:
            while True:
                data = await websocket.receive_text()
                response = await client.send_and_wait(data)
                await websocket.send_text(response)
        except WebSocketDisconnect:
            pass
        finally:
            state["active_websockets"] -= 1

    return app


def main() -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="ref", help="queue names: <prefix>_input_queue, ...")
    args = parser.parse_args()
    client = RabbitMQClient(
        args.rabbitmq_url, f"{args.prefix}_input_queue", f"{args.prefix}_output_queue"
    )
    loop = "asyncio" if os.environ.get("HOPLINE_LOOP") == "asyncio" else "auto"  # auto: uvloop
    uvicorn.run(create_app(client), host=args.host, port=args.port, log_level="warning", loop=loop)


if __name__ == "__main__":
    main()
