"""What a refused publish (a broker nack) means for the client: ``busy`` or ``unavailable``.

RabbitMQ's nack carries no reason. A queue with a byte limit is taken as full (its
bytes are not sampled); with a length limit, the queue's depth right now decides (at
least half full: ``busy``); without a limit, or when the depth cannot be read, the
queue was not available (a quorum queue electing a leader, a node going away), and
the request was not queued: ``unavailable``. One passive declare answers for every
refusal of the same queue within :data:`DEPTH_PROBE_REUSE` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from hopline.wire.amqp import QueueTopology
from hopline.wire.errors import ErrorCode, Failure

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

__all__ = ["DEPTH_PROBE_REUSE", "RefusalJudge"]

#: Seconds one queue-depth probe answers for every publish refused meanwhile.
DEPTH_PROBE_REUSE = 0.2

FULL = Failure(ErrorCode.BUSY, "the broker refused the request (queue full)")
NOT_AVAILABLE = Failure(
    ErrorCode.UNAVAILABLE, "the broker refused the request (queue not available); it was not queued"
)


class RefusalJudge:
    """Decides the error of a refused publish (see the module docstring).

    Args:
        topology: the input queues and their limits.
        connection: returns a connection to probe queue depths on (None: none now).
    """

    def __init__(
        self, topology: QueueTopology, connection: Callable[[], AbstractConnection | None]
    ) -> None:
        self.topology = topology
        self._connection = connection
        self._probes: dict[str, tuple[float, asyncio.Task[int | None]]] = {}

    async def failure(self, queue: str) -> Failure:
        """The error for a publish to ``queue`` the broker refused."""
        topology = self.topology
        if topology.max_bytes is not None:
            return FULL
        if topology.max_length is not None:
            depth = await self._depth(queue)
            if depth is not None and depth * 2 >= topology.max_length:
                return FULL
        return NOT_AVAILABLE

    async def _depth(self, queue: str) -> int | None:
        """Ready messages in ``queue`` now (one passive declare shared by a burst of callers)."""
        loop = asyncio.get_running_loop()
        cached = self._probes.get(queue)
        if cached is None or loop.time() - cached[0] > DEPTH_PROBE_REUSE:
            cached = (loop.time(), loop.create_task(self._probe(queue)))
            self._probes[queue] = cached
        return await asyncio.shield(cached[1])

    async def _probe(self, queue: str) -> int | None:
        conn = self._connection()
        if conn is None or conn.is_closed:
            return None
        try:
            async with asyncio.timeout(1.0):
                channel = await conn.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
        except Exception:
            return None
        return declared.declaration_result.message_count or 0
