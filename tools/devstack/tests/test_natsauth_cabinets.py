"""A runner may store its downloads in the cabinets bucket and read the items it uploads,
with the NATS user it has in production."""

from collections.abc import AsyncIterator
from pathlib import Path

import nats

from figranium_common.nats import (
    CABINETS_BUCKET,
    RunConsumerLimits,
    bind_topology,
    declare_topology,
    inbox_prefix,
    put_stream_object,
    read_object,
)
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_runner_stores_and_reads_cabinet_objects(tmp_path: Path) -> None:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        gateway = await nats.connect(
            server.url_for("gateway"), inbox_prefix=inbox_prefix("gateway")
        )
        runner = await nats.connect(
            server.url_for("runner"), inbox_prefix=inbox_prefix("runner"), allow_reconnect=False
        )
        try:
            limits = RunConsumerLimits(ack_wait_seconds=30, max_deliver=3)
            await declare_topology(gateway.jetstream(), limits, cabinets_max_bytes=10**6)
            js = runner.jetstream(timeout=2)
            assert await bind_topology(js, "runners")
            data = bytes(range(256)) * 1200  # several chunks
            stored = await put_stream_object(js, CABINETS_BUCKET, "items/item_run", _pieces(data))
            assert stored.size == len(data)
            read = [chunk async for chunk in read_object(js, CABINETS_BUCKET, "items/item_run")]
            assert b"".join(read) == data
            # What the runner stored, the gateway serves.
            served = read_object(gateway.jetstream(), CABINETS_BUCKET, "items/item_run")
            assert b"".join([chunk async for chunk in served]) == data
        finally:
            await runner.close()
            await gateway.close()
