"""Broker address lists: parsing, failing over at connect, and reconnecting on loss."""

from __future__ import annotations

import asyncio
import gc
import time

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from hopline.broker_node import free_port
from hopline.runtime import run
from hopline.wire.connect import (
    RETRY_PAUSE,
    BrokerUnavailable,
    Link,
    open_connection,
    parse_amqp_urls,
    redact_url,
)
from tests.helpers import eventually


def dead_url() -> str:
    """An AMQP URL where nothing listens."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


def test_comma_lists_and_repeats_are_one_list() -> None:
    urls = parse_amqp_urls(["amqp://a/, amqp://b:5673/", "amqps://u:p@c/vh", "amqp://a/"])
    assert urls == ["amqp://a/", "amqp://b:5673/", "amqps://u:p@c/vh"]


@pytest.mark.parametrize(
    "value",
    ["garbage", "http://host/", "amqp://", "amqp://h:99999/", "amqp://h/?heartbeat=x", " , "],
)
def test_malformed_addresses_are_refused_in_one_line(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_amqp_urls(value)
    assert "\n" not in str(info.value)


def test_passwords_never_appear_in_errors_or_logs() -> None:
    with pytest.raises(ValueError) as info:
        parse_amqp_urls("amqp://u:secret@h:99999/")
    assert "secret" not in str(info.value)
    assert redact_url("amqp://u:secret@a/,amqp://u:secret@b/").count("***") == 2


@pytest.mark.parametrize("order", ["shuffle", "listed"])
async def test_a_dead_address_is_skipped(rabbitmq_url: str, order: str) -> None:
    conn = await open_connection([dead_url(), rabbitmq_url], "test", 2.0, order)  # type: ignore
    try:
        assert str(conn.url).startswith(rabbitmq_url.rstrip("/"))
    finally:
        await conn.close()


async def test_no_address_answers_names_each_one() -> None:
    first, second = dead_url(), dead_url()
    with pytest.raises(BrokerUnavailable) as info:
        await open_connection([first, second], "test", 1.0)
    assert redact_url(first) in str(info.value) and redact_url(second) in str(info.value)


async def test_a_failed_attempt_leaves_no_connection_to_close_behind() -> None:
    """aio_pika.connect leaves the connection of an attempt that times out alive and
    unclosed; whenever it was collected, aio-pika scheduled a close() on whatever loop
    was current (between tests: a coroutine never awaited, a failure of whichever test
    ran then). The attempt closes it itself."""

    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts TCP, never speaks AMQP

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(BrokerUnavailable):
            await open_connection([f"amqp://guest:guest@127.0.0.1:{port}/"], "test", 0.5)
        gc.collect()
        left = [
            conn
            for conn in gc.get_objects()
            if isinstance(conn, aio_pika.Connection) and conn.url.port == port
        ]
        assert all(conn.is_closed for conn in left)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_link_reconnects_and_runs_setup_again(rabbitmq_url: str) -> None:
    """A lost connection: on_lost at once, ready cleared, a new connection set up again."""
    setups: list[AbstractConnection] = []
    lost: list[BaseException | None] = []

    async def setup(conn: AbstractConnection) -> None:
        channel = await conn.channel()
        await channel.declare_queue("", exclusive=True)
        setups.append(conn)

    link = Link([dead_url(), rabbitmq_url], "test-link", setup, lost.append, attempt_timeout=2)
    await link.start(timeout=10)
    try:
        assert link.ready.is_set() and len(setups) == 1
        first = link.connection
        assert first is not None and first.transport is not None
        await first.transport.connection.close(ConnectionError("cut"))
        await eventually(lambda: bool(lost), message="on_lost called")
        await eventually(lambda: link.ready.is_set() and len(setups) == 2, message="set up again")
        assert link.connection is not first and link.connections_made == 2
    finally:
        await link.close()
    assert not link.ready.is_set()


async def test_link_that_never_connects_fails_within_its_timeout() -> None:
    async def setup(conn: AbstractConnection) -> None:
        raise AssertionError("never called")

    link = Link([dead_url()], "test-link", setup, attempt_timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BrokerUnavailable, match="cannot reach RabbitMQ"):
        await link.start(timeout=1.5)
    assert loop.time() - started < 3


def test_link_paused_as_its_first_round_fails_still_says_why() -> None:
    """The process paused past RETRY_PAUSE just as the first round failed (a loaded machine):
    start() gives that round's reason, not 'no connection within 10 s' from the next round,
    begun meanwhile. On the commands' own loop (uvloop), where the next round won that race."""

    async def setup(conn: AbstractConnection) -> None:
        raise AssertionError("never called")

    async def start_paused() -> tuple[str, float]:
        link = Link([dead_url()], "test-link", setup, attempt_timeout=2.0)
        loop = asyncio.get_running_loop()

        def pause_once_the_round_failed() -> None:
            """On every turn of the loop until the round failed; then block the loop."""
            if not link.last_errors:
                loop.call_soon(pause_once_the_round_failed)
            else:
                time.sleep(RETRY_PAUSE + 0.2)  # the whole process is paused

        loop.call_soon(pause_once_the_round_failed)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as info:
            await link.start(timeout=10)
        return str(info.value), time.monotonic() - started

    message, seconds = run(start_paused())
    assert message.startswith("cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:"), message
    assert seconds < 5
