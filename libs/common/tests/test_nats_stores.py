"""The NATS stores the services share: objects stored by put_new_object, read back with
nats-py's own object store client; the stops bucket, made with direct gets allowed, and an
older one brought up to date where the topology is declared."""

from __future__ import annotations

import contextlib
import os

import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, NotFoundError

from figranium_common.nats import (
    CAPTURES_BUCKET,
    STOPS_BUCKET,
    STOPS_STREAM,
    RunConsumerLimits,
    captures_store,
    declare_topology,
    put_new_object,
    stops_store,
)


@pytest.mark.parametrize("size", [0, 1000, 128 * 1024, 300 * 1024 + 7])
async def test_what_is_put_reads_back_whole_with_its_size_and_digest(
    nats_client: NATS, size: int
) -> None:
    js = nats_client.jetstream()
    store = await captures_store(js)
    data = os.urandom(size)
    name = f"exec_put_{size}_agent_1.png"
    await put_new_object(js, CAPTURES_BUCKET, name, data)
    got = await store.get(name)  # nats-py checks the size and the SHA-256 digest
    assert got.data == data
    assert got.info.size == size
    assert got.info.chunks == -(-size // (128 * 1024))
    assert got.info.name == name


async def test_a_name_put_again_reads_the_new_object(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    store = await captures_store(js)
    await put_new_object(js, CAPTURES_BUCKET, "exec_again.png", b"first")
    await put_new_object(js, CAPTURES_BUCKET, "exec_again.png", b"second")
    assert (await store.get("exec_again.png")).data == b"second"


async def test_a_missing_bucket_fails_and_leaves_nothing(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    with pytest.raises(NatsError):
        await put_new_object(js, "no-such-bucket", "exec_lost.png", b"data")
    with pytest.raises(NotFoundError):
        await js.object_store("no-such-bucket")


async def _looked_up_directly(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    assert (await js.stream_info(STOPS_STREAM)).config.allow_direct
    stops = await stops_store(js)
    await stops.put("exec_stopped", b"stop")
    assert (await stops.get("exec_stopped")).value == b"stop"
    with pytest.raises(KeyNotFoundError):
        await stops.get("exec_running")


@pytest.fixture
async def no_stops(nats_client: NATS) -> None:
    """No stops bucket yet (the server is the module's)."""
    with contextlib.suppress(NotFoundError):
        await nats_client.jetstream().delete_key_value(STOPS_BUCKET)


@pytest.mark.usefixtures("no_stops")
async def test_a_new_bucket_allows_direct_gets(nats_client: NATS) -> None:
    await stops_store(nats_client.jetstream())
    await _looked_up_directly(nats_client)


@pytest.mark.usefixtures("no_stops")
async def test_a_bucket_of_an_older_release_keeps_its_stops_and_allows_direct_gets(
    nats_client: NATS,
) -> None:
    js = nats_client.jetstream()
    older = await js.create_key_value(KeyValueConfig(bucket=STOPS_BUCKET, ttl=3600))
    await older.put("exec_before", b"stop")
    assert not (await js.stream_info(STOPS_STREAM)).config.allow_direct
    await declare_topology(js, RunConsumerLimits(ack_wait_seconds=30, max_deliver=3))
    stops = await stops_store(js)
    assert (await stops.get("exec_before")).value == b"stop"
    await _looked_up_directly(nats_client)
