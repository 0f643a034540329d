"""PullStream against a real NATS server: prompt hand-over, bounded credit, wake, close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from figranium_common.pull import PullStream
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port

STREAM = "PULLTEST"
DURABLE = "workers"


@pytest.fixture
async def jetstream(tmp_path: Path) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["pulltest.>"]))
        await js.add_consumer(
            STREAM,
            ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
        )
        try:
            yield nc, js
        finally:
            await nc.close()


async def _publish(js: JetStreamContext, count: int) -> None:
    for i in range(count):
        await js.publish("pulltest.job", str(i).encode())


async def _woken_while_waiting(pulled: PullStream, limit: int) -> list[Msg]:
    """What a take that was woken while it waited (its pull request still open) gave."""
    waiting = asyncio.create_task(pulled.take(limit, timeout=30))
    await asyncio.sleep(0.2)
    pulled.wake()
    return await asyncio.wait_for(waiting, 5)


async def _delivered(js: JetStreamContext) -> int:
    info = await js.consumer_info(STREAM, DURABLE)
    return int(info.delivered.consumer_seq)


async def test_a_lone_message_is_handed_over_without_waiting_for_the_batch(
    jetstream: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = jetstream
    async with PullStream(nc, STREAM, DURABLE, expires_seconds=30) as pulled:
        waiting = asyncio.create_task(pulled.take(8, timeout=30))
        await asyncio.sleep(0.3)  # the pull request is open before the message exists
        started = time.monotonic()
        await _publish(js, 1)
        messages = await waiting
        took = time.monotonic() - started
        assert [m.data for m in messages] == [b"0"]
        # fetch(batch=8) would have held it until its timeout (30 s here).
        assert took < 10
        await messages[0].ack()


async def test_never_more_delivered_than_the_limit(
    jetstream: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = jetstream
    await _publish(js, 10)
    async with PullStream(nc, STREAM, DURABLE) as pulled:
        first = await pulled.take(3, timeout=10)
        assert len(first) == 3
        await asyncio.sleep(0.5)
        # Nothing more was asked for while the three are in hand.
        assert await _delivered(js) == 3
        for msg in first[:2]:
            await msg.ack()
        # Two slots free again: two more, still no more than asked.
        more = await pulled.take(2, timeout=10)
        assert [m.data for m in more] == [b"3", b"4"]
        await asyncio.sleep(0.5)
        assert await _delivered(js) == 5


async def test_wake_ends_a_wait_and_a_new_limit_is_asked_for(
    jetstream: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = jetstream
    async with PullStream(nc, STREAM, DURABLE) as pulled:
        assert await _woken_while_waiting(pulled, 1) == []
        await _publish(js, 3)
        # One message is still asked for by the first request; the new limit adds two.
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            got += [m.data for m in await pulled.take(3 - len(got), timeout=2)]
        assert sorted(got) == [b"0", b"1", b"2"]


async def test_messages_not_taken_are_handed_back_at_close(
    jetstream: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = jetstream
    async with PullStream(nc, STREAM, DURABLE) as pulled:
        await _woken_while_waiting(pulled, 2)  # leaves a request for two open
        await _publish(js, 2)
        await asyncio.sleep(0.5)  # delivered to the stream's inbox, not taken
    # Handed back with a nak: another consumer instance gets them at once, not after the
    # 30 s ack wait.
    async with PullStream(nc, STREAM, DURABLE) as again:
        got = await again.take(2, timeout=5)
        if len(got) < 2:
            got += await again.take(2 - len(got), timeout=5)
        assert sorted(m.data for m in got) == [b"0", b"1"]
        assert all(m.metadata.num_delivered == 2 for m in got)


async def test_a_missing_consumer_is_retried_without_a_busy_loop(
    jetstream: tuple[NATS, JetStreamContext],
) -> None:
    nc, _ = jetstream
    requests = 0

    async def count(msg: object) -> None:
        nonlocal requests
        requests += 1

    spy = await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.nobody", cb=count)
    async with PullStream(nc, STREAM, "nobody") as pulled:
        assert await pulled.take(1, timeout=3) == []
    await spy.unsubscribe()
    assert 1 <= requests <= 6
