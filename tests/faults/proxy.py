"""A TCP proxy for fault tests: forward to a target, and cut, hold or slow the traffic on demand.

Usage::

    proxy = TCPProxy("127.0.0.1", 5672)
    await proxy.start()            # listens on proxy.port
    proxy.cut()                    # a silent partition: nothing flows, sockets stay open
    proxy.restore()                # traffic flows again (held bytes included)
    proxy.hold_downstream()        # target -> client stops; client -> target still flows
    proxy.slow(0.2)                # every chunk arrives 0.2 s later (a long link)
    proxy.links[1].hold_downstream()   # the same, for the second connection accepted only
    await proxy.close()

Nothing is dropped: a stopped direction stops *reading*, so bytes wait in the
kernel buffers and TCP pushes back on the sender, exactly as on a stalled link.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Link", "TCPProxy"]


class Link:
    """The two directions of one proxied connection, each stoppable on its own."""

    def __init__(self, up: bool, down: bool) -> None:
        self.upstream_open = asyncio.Event()  # client -> target
        self.downstream_open = asyncio.Event()  # target -> client
        if up:
            self.upstream_open.set()
        if down:
            self.downstream_open.set()

    def hold_downstream(self) -> None:
        """Stop the target -> client direction."""
        self.downstream_open.clear()

    def restore(self) -> None:
        """Let both directions flow."""
        self.upstream_open.set()
        self.downstream_open.set()


class TCPProxy:
    """Forward every connection accepted on ``port`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay = 0.0
        self.links: list[Link] = []  # in the order connections were accepted
        self._up = True  # state given to new links
        self._down = True
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()  # one per accepted connection
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def cut(self) -> None:
        """Stop both directions on every connection, new ones included (a partition)."""
        self._up = self._down = False
        for link in self.links:
            link.upstream_open.clear()
            link.downstream_open.clear()

    def hold_downstream(self) -> None:
        """Stop the target -> client direction only, on every connection."""
        self._down = False
        for link in self.links:
            link.hold_downstream()

    def restore(self) -> None:
        """Let both directions flow again, without added delay."""
        self.delay = 0.0
        self._up = self._down = True
        for link in self.links:
            link.restore()

    def slow(self, delay: float) -> None:
        """Deliver every chunk read from now on ``delay`` seconds later (order is kept)."""
        self.delay = delay

    def reset(self) -> None:
        """Close every proxied connection at once (the listener stays)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        self.reset()
        for task in [*self._tasks, *self._handlers]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        link = Link(self._up, self._down)
        self.links.append(link)
        try:
            target_r, target_w = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            client_w.transport.abort()
            self._handlers.discard(handler)
            return
        self._writers.update((client_w, target_w))
        up = asyncio.ensure_future(self._pipe(client_r, target_w, link.upstream_open))
        down = asyncio.ensure_future(self._pipe(target_r, client_w, link.downstream_open))
        self._tasks.update((up, down))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._tasks.difference_update((up, down))
            for writer in (client_w, target_w):
                self._writers.discard(writer)
                writer.transport.abort()
            self._handlers.discard(handler)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        """Forward ``reader`` to ``writer``; with a delay, each chunk leaves ``delay`` s later
        than it came (latency, not a throughput limit)."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await chunks.get()
                if not data:
                    return
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                await gate.wait()
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            with contextlib.suppress(ConnectionError):
                while not sender.done():
                    await gate.wait()
                    data = await reader.read(65536)
                    chunks.put_nowait((loop.time() + self.delay, data))
                    if not data:
                        break
                await sender
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
