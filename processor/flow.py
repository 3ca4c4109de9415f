"""The processor's consumers, paused while unacked deliveries hold too many bytes.

RabbitMQ ignores ``basic.qos`` ``prefetch_size``, and changing ``prefetch_count`` on a
channel does not affect consumers already started, so the processor bounds the bytes
it holds itself:

* Every delivery adds its body size to :attr:`Consumers.unacked_bytes`; acking,
  rejecting or dropping it takes the size back (:meth:`Consumers.taken` /
  :meth:`Consumers.released`).
* When ``unacked_bytes`` reaches ``limit``, the consumers are cancelled
  (``basic.cancel``): the broker stops delivering; deliveries already on the wire
  still arrive and are handled. When it falls to ``limit / 2`` they consume again,
  each new consumer with a prefetch count (RabbitMQ applies ``basic.qos`` to
  consumers started after it) of what fits in the rest of the budget at the mean
  delivery size seen so far (at least 1, at most ``prefetch``). So after the first
  pause at most about ``limit`` + one message is held; the first burst after start
  is bounded by ``prefetch`` only (no size is known yet). A single message larger
  than ``limit`` is still handled (alone).
* ``limit`` 0 disables the bound (only ``prefetch_count`` applies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractQueue

from hopline.wire.incoming import Incoming, consume

__all__ = ["Consumers"]

log = logging.getLogger(__name__)


class Consumers:
    """Consumers of the input queues with a byte budget. See the module docstring."""

    def __init__(
        self,
        callback: Callable[[Incoming], Awaitable[None]],
        limit: int,
        prefetch: int,
        set_prefetch: Callable[[int], Awaitable[Any]],
    ) -> None:
        self.limit = limit
        self.prefetch = prefetch
        self.unacked_bytes = 0
        self.pauses = 0
        self._callback = callback
        self._set_prefetch = set_prefetch
        self._current_prefetch = prefetch
        self._mean_size = 0.0
        self._queues: list[AbstractQueue] = []
        self._tags: dict[str, str] = {}  # queue name -> consumer tag while consuming
        self._want = True
        self._stopped = False
        self._lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        """Whether the consumers are (being) paused for the byte budget."""
        return not self._want

    async def start(self, queues: list[AbstractQueue]) -> None:
        """Consume ``queues``."""
        self._queues = queues
        await self._sync()

    async def restart(self, queues: list[AbstractQueue]) -> None:
        """Consume ``queues`` of a new connection; the old connection's consumers are gone."""
        async with self._lock:
            self._tags.clear()
            self._queues = queues
        await self._sync()

    async def stop(self) -> None:
        """Cancel the consumers for good (deliveries on the wire still arrive)."""
        self._stopped = True
        self._want = False
        await self._sync()

    def taken(self, size: int) -> None:
        """A delivery of ``size`` bytes arrived."""
        self.unacked_bytes += size
        self._mean_size = size if not self._mean_size else 0.9 * self._mean_size + 0.1 * size
        if self.limit and self._want and self.unacked_bytes >= self.limit:
            self._want = False
            self.pauses += 1
            log.info("pausing consumers: %d unacked bytes", self.unacked_bytes)
            self._schedule()

    def released(self, size: int) -> None:
        """A delivery of ``size`` bytes was acked, rejected or dropped."""
        self.unacked_bytes -= size
        if not self._want and not self._stopped and self.unacked_bytes <= self.limit // 2:
            self._want = True
            log.info("resuming consumers: %d unacked bytes", self.unacked_bytes)
            self._schedule()

    async def _fit_prefetch(self) -> None:
        """Give the consumers about to start a prefetch count that fits the byte budget."""
        budget = max(self.limit - self.unacked_bytes, 0)
        per_queue = budget / max(len(self._queues), 1) / max(self._mean_size, 1.0)
        count = max(1, min(self.prefetch, int(per_queue)))
        if count != self._current_prefetch:
            await self._set_prefetch(count)
            self._current_prefetch = count

    def _schedule(self) -> None:
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_logged())

    async def _sync_logged(self) -> None:
        try:
            await self._sync()
        except Exception as exc:  # the channel is down: the robust connection re-consumes
            log.warning("could not %s consumers: %r", "resume" if self._want else "pause", exc)

    async def _sync(self) -> None:
        """Make the consumers match the wanted state (repeats until they do)."""
        async with self._lock:
            while True:
                want = self._want
                if want and self.pauses:
                    await self._fit_prefetch()
                for queue in self._queues:
                    tag = self._tags.get(queue.name)
                    if want and tag is None:
                        self._tags[queue.name] = await consume(
                            queue.channel, queue.name, self._callback
                        )
                    elif not want and tag is not None:
                        del self._tags[queue.name]
                        with contextlib.suppress(Exception):
                            channel = await queue.channel.get_underlay_channel()
                            await channel.basic_cancel(tag)
                if want == self._want:
                    return
