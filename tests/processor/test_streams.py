"""Streamed replies on AMQP, read with a bare aio-pika requester (no gateway involved)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from hopline.handler import BadRequest
from hopline.wire.amqp import CONTROL_HEADER, DEADLINE_HEADER, RUN_HEADER, STREAM_HEADER
from hopline.wire.batch import (
    BATCH_CONTENT_TYPE,
    CANCEL_CONTENT_TYPE,
    PARTIAL_CONTENT_TYPE,
    Chunk,
    ItemError,
    decode_partials,
    decode_replies,
    encode_cancel,
    encode_requests,
)
from tests.conftest import Stack
from tests.helpers import eventually
from tests.sample_handlers import GatedWords


@dataclass
class Requester:
    """A bare aio-pika client that publishes request batches and keeps what comes back."""

    channel: aio_pika.abc.AbstractChannel
    reply_queue: str
    messages: list[AbstractIncomingMessage] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def send(
        self,
        queue: str,
        payloads: list[str],
        *,
        stream: bool = True,
        deadline: float = 30.0,
        batch: bool = True,
    ) -> str:
        corr = str(uuid.uuid4())
        headers = {DEADLINE_HEADER: int((time.time() + deadline) * 1000)}
        if stream:
            headers[STREAM_HEADER] = 1
        body = encode_requests(payloads) if batch else payloads[0].encode()
        await self.channel.default_exchange.publish(
            aio_pika.Message(body, correlation_id=corr, reply_to=self.reply_queue,
                             content_type=BATCH_CONTENT_TYPE if batch else None, headers=headers),
            routing_key=queue,
        )  # fmt: skip
        return corr

    def partials(self, corr: str) -> list[Chunk]:
        return [
            c
            for m in self.messages
            if m.correlation_id == corr and m.content_type == PARTIAL_CONTENT_TYPE
            for c in decode_partials(m.body)
        ]

    def final(self, corr: str) -> AbstractIncomingMessage | None:
        for m in self.messages:
            if m.correlation_id == corr and m.content_type != PARTIAL_CONTENT_TYPE:
                return m
        return None

    async def wait(self, predicate: object, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def requester(url: str) -> AsyncIterator[Requester]:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        r = Requester(channel, queue.name)
        await queue.consume(r.on_message, no_ack=True)
        yield r


async def test_chunks_arrive_in_order_before_the_handler_produced_the_last(stack: Stack) -> None:
    """100 chunks: the first 49 arrive while the handler waits on a gate; all in order."""
    handler = GatedWords()
    await stack.processor(handler)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["a"])
        await r.wait(lambda: len(r.partials(corr)) >= 49)
        assert not handler.gate.is_set()
        assert r.final(corr) is None
        handler.gate.set()
        await r.wait(lambda: r.final(corr) is not None)
        chunks = r.partials(corr)
        final = r.final(corr)
        assert final is not None
    assert [c.seq for c in chunks] == list(range(99))
    assert {c.index for c in chunks} == {0}
    assert decode_replies(final.body, 1) == ["a99,"], "the last chunk is the item's final reply"
    assert [c.data for c in chunks] + ["a99,"] == [f"a{i}," for i in range(100)]
    partial_messages = [m for m in r.messages if m.content_type == PARTIAL_CONTENT_TYPE]
    assert len(partial_messages) < 20, "chunks of one tick should share a message"
    runs = {m.headers[RUN_HEADER] for m in partial_messages}
    assert runs == {final.headers[RUN_HEADER]}
    assert all(m.headers[CONTROL_HEADER].startswith("hopline.control.") for m in partial_messages)


async def test_streams_of_one_batch_share_messages_and_keep_their_order(stack: Stack) -> None:
    """Two streamed requests in one batch: chunks interleave in shared messages, each in order."""

    async def count(payload: str | bytes) -> AsyncIterator[str]:
        for i in range(20):
            await asyncio.sleep(0)
            yield f"{payload!s}{i}"

    await stack.processor(count)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["x", "y", "z"])
        await r.wait(lambda: r.final(corr) is not None)
        final = r.final(corr)
        assert final is not None
        chunks = r.partials(corr)
    for index, name in enumerate("xyz"):
        mine = [c for c in chunks if c.index == index and not c.last]
        assert [c.seq for c in mine] == list(range(19))
        assert [c.data for c in mine] == [f"{name}{i}" for i in range(19)]
    assert decode_replies(final.body, 3) == ["x19", "y19", "z19"]
    early = [c for c in chunks if c.last]  # x and y ended while z still ran: answered at once
    assert [(c.index, c.seq, c.data) for c in early] == [(0, 19, "x19"), (1, 19, "y19")]
    mixed = [
        m for m in r.messages if m.content_type == PARTIAL_CONTENT_TYPE
        and len({c.index for c in decode_partials(m.body)}) > 1
    ]  # fmt: skip
    assert mixed, "no partial message carried chunks of two requests"


async def test_requesters_that_did_not_ask_for_partials_get_the_chunks_joined(
    stack: Stack,
) -> None:
    """Without x-hopline-stream: one reply with every chunk, plain or batched."""
    handler = GatedWords()
    handler.gate.set()
    await stack.processor(handler)
    async with requester(stack.rabbitmq_url) as r:
        plain = await r.send(stack.topology.input_queue, ["p"], stream=False, batch=False)
        batched = await r.send(stack.topology.batch_queue, ["b"], stream=False)
        await r.wait(lambda: r.final(plain) is not None and r.final(batched) is not None)
        assert not [m for m in r.messages if m.content_type == PARTIAL_CONTENT_TYPE]
        plain_reply, batch_reply = r.final(plain), r.final(batched)
    assert plain_reply is not None and batch_reply is not None
    assert plain_reply.body == "".join(f"p{i}," for i in range(100)).encode()
    assert RUN_HEADER not in (plain_reply.headers or {})
    assert decode_replies(batch_reply.body, 1) == ["".join(f"b{i}," for i in range(100))]


async def test_a_cancel_message_closes_the_generator_within_a_second(stack: Stack) -> None:
    """The requester's cancel on the control queue closes the stream's generator (aclose)."""
    handler = GatedWords()  # never released: the stream stalls after 50 chunks
    proc = await stack.processor(handler)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["a", "b"])
        await r.wait(lambda: {c.index for c in r.partials(corr)} == {0, 1})
        partial = next(m for m in r.messages if m.content_type == PARTIAL_CONTENT_TYPE)
        control = partial.headers[CONTROL_HEADER]
        t0 = time.monotonic()
        await r.channel.default_exchange.publish(
            aio_pika.Message(encode_cancel([]), correlation_id=corr,
                             content_type=CANCEL_CONTENT_TYPE),
            routing_key=control,
        )  # fmt: skip
        await asyncio.wait_for(handler.closed.wait(), 1.0)
        closed_after = time.monotonic() - t0
        await r.wait(lambda: r.final(corr) is not None)
        final = r.final(corr)
        assert final is not None
    print(f"[stream cancel] generator closed {closed_after * 1000:.0f} ms after the cancel")
    replies = decode_replies(final.body, 2)
    assert all(isinstance(x, ItemError) and x.code == "processor_error" for x in replies)
    await eventually(lambda: proc.in_progress == 0, message="message acked")


async def test_the_deadline_covers_the_whole_stream(stack: Stack) -> None:
    """A stream still running at its deadline is closed, acked, and never answered."""
    closed = asyncio.Event()

    async def endless(payload: str | bytes) -> AsyncIterator[str]:
        try:
            while True:
                await asyncio.sleep(0.05)
                yield "tick"
        finally:
            closed.set()

    proc = await stack.processor(endless)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["x"], deadline=1.0)
        await asyncio.wait_for(closed.wait(), 5)
        await eventually(lambda: proc.in_progress == 0, message="message acked")
        assert r.partials(corr), "no chunk was streamed before the deadline"
        assert r.final(corr) is None


async def test_an_error_mid_stream_follows_every_chunk_sent(stack: Stack) -> None:
    """Chunks yielded before a BadRequest all arrive; the error is the item's final reply."""

    async def refuse_late(payload: str | bytes) -> AsyncIterator[str]:
        yield "one"
        yield "two"
        raise BadRequest("no third")

    await stack.processor(refuse_late)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["x"])
        await r.wait(lambda: r.final(corr) is not None)
        final = r.final(corr)
        assert final is not None
        assert [c.data for c in r.partials(corr)] == ["one", "two"]
    assert decode_replies(final.body, 1) == [ItemError("bad_request", "no third")]


async def test_plain_generators_run_in_threads_and_close_when_cancelled(stack: Stack) -> None:
    """A blocking generator's next() runs in the pool; a cancel closes it after that next()."""
    gate = threading.Event()
    closed = threading.Event()

    def blocking_words(payload: str | bytes) -> Iterator[str]:
        try:
            yield "first "
            yield "second "
            gate.wait(10)
            yield "never seen"
        finally:
            closed.set()

    await stack.processor(blocking_words)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["x"])
        await r.wait(lambda: len(r.partials(corr)) >= 1)
        control = r.messages[0].headers[CONTROL_HEADER]
        await r.channel.default_exchange.publish(
            aio_pika.Message(encode_cancel([0]), correlation_id=corr,
                             content_type=CANCEL_CONTENT_TYPE),
            routing_key=control,
        )  # fmt: skip
        await r.wait(lambda: r.final(corr) is not None)
        assert not closed.is_set(), "closed while its next() was still blocked"
        gate.set()
        await eventually(closed.is_set, timeout=5, message="generator closed")


async def test_a_quick_request_is_answered_before_a_slow_one_of_its_batch(stack: Stack) -> None:
    """Early answers: 'fast' (batched with a stalled 'slow') gets its reply in a partial batch."""
    gate = asyncio.Event()

    async def handler(payload: str | bytes) -> str:
        if payload == "slow":
            await gate.wait()
        return f"{payload!s} done"

    await stack.processor(handler)
    async with requester(stack.rabbitmq_url) as r:
        corr = await r.send(stack.topology.batch_queue, ["slow", "fast", "bad"])
        await r.wait(lambda: len(r.partials(corr)) >= 2)
        assert r.final(corr) is None
        early = {c.index: c for c in r.partials(corr)}
        assert early[1] == Chunk(1, 0, "fast done", last=True)
        gate.set()
        await r.wait(lambda: r.final(corr) is not None)
        final = r.final(corr)
        assert final is not None
    assert decode_replies(final.body, 3) == ["slow done", "fast done", "bad done"]
