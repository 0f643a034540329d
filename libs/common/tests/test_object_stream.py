"""Objects stored from a stream of pieces and read back chunk by chunk: the layout nats-py
reads, the digest, and nothing left of an object whose source failed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import OBJ_STREAM_TEMPLATE

from figranium_common.nats import (
    CAPTURES_BUCKET,
    captures_store,
    put_new_object,
    put_stream_object,
    read_object,
)

CHUNK = 128 * 1024


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(("length", "piece"), [(0, 10), (1000, 7), (3 * CHUNK + 5, 50_000)])
async def test_a_streamed_object_reads_back_whole(
    nats_client: NATS, length: int, piece: int
) -> None:
    js = nats_client.jetstream()
    store = await captures_store(js)
    data = os.urandom(length)
    name = f"stream_{length}"
    stored = await put_stream_object(js, CAPTURES_BUCKET, name, _pieces(data, piece))
    assert (stored.size, stored.sha256) == (length, hashlib.sha256(data).hexdigest())
    got = await store.get(name)  # nats-py checks the size and the digest
    assert got.data == data and got.info.chunks == -(-length // CHUNK)
    chunks = [chunk async for chunk in read_object(js, CAPTURES_BUCKET, name)]
    assert b"".join(chunks) == data
    assert all(len(chunk) == CHUNK for chunk in chunks[:-1])


async def test_reading_a_missing_object_fails_before_any_chunk(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    await captures_store(js)
    with pytest.raises(ObjectNotFoundError):
        await anext(read_object(js, CAPTURES_BUCKET, "never_stored"))


async def test_reading_checks_the_digest(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    store = await captures_store(js)
    await put_new_object(js, CAPTURES_BUCKET, "swapped", b"original bytes")
    info = await store.get_info("swapped")
    # Another chunk under the object's chunk subject: the bytes read no longer match.
    await js.publish(f"$O.{CAPTURES_BUCKET}.C.{info.nuid}", b"tampered bytes")
    stream = OBJ_STREAM_TEMPLATE.format(bucket=CAPTURES_BUCKET)
    first = await js.get_msg(
        stream, seq=1, subject=f"$O.{CAPTURES_BUCKET}.C.{info.nuid}", next=True
    )
    await js.delete_msg(stream, first.seq or 0)
    with pytest.raises(ValueError, match="digest"):
        [chunk async for chunk in read_object(js, CAPTURES_BUCKET, "swapped")]


async def test_a_failing_source_leaves_no_object(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    store = await js.create_object_store("stream-failing")

    async def refused() -> AsyncIterator[bytes]:
        yield os.urandom(2 * CHUNK)
        raise RuntimeError("over quota")

    with pytest.raises(RuntimeError, match="over quota"):
        await put_stream_object(js, "stream-failing", "half", refused())
    with pytest.raises(ObjectNotFoundError):
        await store.get_info("half")
    info = await js.stream_info(OBJ_STREAM_TEMPLATE.format(bucket="stream-failing"))
    assert info.state.messages == 0
