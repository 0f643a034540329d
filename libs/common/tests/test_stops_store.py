"""The stops bucket: made with direct gets allowed, and an older one brought up to date."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError

from figranium_common.nats import STOPS_BUCKET, STOPS_STREAM, stops_store
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    with LocalNats(tmp_path_factory.mktemp("stops") / "nats", free_port()) as started:
        yield started


@pytest.fixture
async def nc(server: LocalNats) -> AsyncIterator[NATS]:
    client = await nats.connect(server.url)
    try:
        yield client
    finally:
        await client.close()


async def _looked_up_directly(nc: NATS) -> None:
    js = nc.jetstream()
    assert (await js.stream_info(STOPS_STREAM)).config.allow_direct
    stops = await stops_store(js)
    await stops.put("exec_stopped", b"stop")
    assert (await stops.get("exec_stopped")).value == b"stop"
    with pytest.raises(KeyNotFoundError):
        await stops.get("exec_running")


async def test_a_new_bucket_allows_direct_gets(nc: NATS) -> None:
    await stops_store(nc.jetstream())
    await _looked_up_directly(nc)


async def test_a_bucket_of_an_older_release_keeps_its_stops_and_allows_direct_gets(
    nc: NATS,
) -> None:
    js = nc.jetstream()
    older = await js.create_key_value(KeyValueConfig(bucket=STOPS_BUCKET, ttl=3600))
    await older.put("exec_before", b"stop")
    assert not (await js.stream_info(STOPS_STREAM)).config.allow_direct
    stops = await stops_store(js)
    assert (await stops.get("exec_before")).value == b"stop"
    await _looked_up_directly(nc)
