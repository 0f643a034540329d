"""Objects stored by put_new_object, read back with nats-py's own object store client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from figranium_common.nats import CAPTURES_BUCKET, captures_store, put_new_object
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    with LocalNats(tmp_path_factory.mktemp("objects") / "nats", free_port()) as started:
        yield started


@pytest.fixture
async def nc(server: LocalNats) -> AsyncIterator[NATS]:
    client = await nats.connect(server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize("size", [0, 1000, 128 * 1024, 300 * 1024 + 7])
async def test_what_is_put_reads_back_whole_with_its_size_and_digest(nc: NATS, size: int) -> None:
    js = nc.jetstream()
    store = await captures_store(js)
    data = os.urandom(size)
    name = f"exec_put_{size}_agent_1.png"
    await put_new_object(js, CAPTURES_BUCKET, name, data)
    got = await store.get(name)  # nats-py checks the size and the SHA-256 digest
    assert got.data == data
    assert got.info.size == size
    assert got.info.chunks == -(-size // (128 * 1024))
    assert got.info.name == name


async def test_a_name_put_again_reads_the_new_object(nc: NATS) -> None:
    js = nc.jetstream()
    store = await captures_store(js)
    await put_new_object(js, CAPTURES_BUCKET, "exec_again.png", b"first")
    await put_new_object(js, CAPTURES_BUCKET, "exec_again.png", b"second")
    assert (await store.get("exec_again.png")).data == b"second"


async def test_a_missing_bucket_fails_and_leaves_nothing(nc: NATS) -> None:
    js = nc.jetstream()
    with pytest.raises(NatsError):
        await put_new_object(js, "no-such-bucket", "exec_lost.png", b"data")
    with pytest.raises(NotFoundError):
        await js.object_store("no-such-bucket")
