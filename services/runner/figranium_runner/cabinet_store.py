"""The cabinets bucket as a runner uses it: a run's downloads go in, each as the object of
the item it becomes, and the items it uploads come out, streamed through files on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from figranium_common.cabinet_models import CabinetFile, StoredDownload
from figranium_common.nats import (
    CABINETS_BUCKET,
    cabinets_store,
    is_no_room,
    put_file_object,
    read_object,
)
from figranium_runner.cabinet_run import KeptDownload
from figranium_runner.state import LogSink

log = structlog.get_logger(__name__)


class CabinetStore:
    """The cabinets bucket, for every run of this runner."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._ready = False  # looked up once, not once per run

    async def fetch(self, item: CabinetFile, destination: Path) -> None:
        """Write ``item``'s bytes into ``destination`` chunk by chunk (its digest checked)."""
        with destination.open("wb") as target:
            async for chunk in read_object(self._js, CABINETS_BUCKET, item.object):
                await asyncio.to_thread(target.write, chunk)

    async def put(self, downloads: list[KeptDownload], emit: LogSink) -> list[StoredDownload]:
        """Store each download as its item's object, then remove the files; answers those
        stored. One the bucket has no room for is dropped, said in the run's log; any other
        NATS error raises (the run is then handed back, its files removed)."""
        stored: list[StoredDownload] = []
        try:
            for kept in downloads:
                try:
                    await self._put(kept)
                except NatsError as exc:
                    if not is_no_room(exc):
                        raise
                    log.error("run.download_dropped", item=kept.stored.item_id)
                    await emit(
                        f"[DOWNLOAD ERROR] {kept.stored.name} dropped: the cabinets bucket is"
                        " full (CABINETS_MAX_TOTAL_BYTES)"
                    )
                    continue
                stored.append(kept.stored)
        finally:
            for kept in downloads:
                kept.path.unlink(missing_ok=True)
        return stored

    async def _put(self, kept: KeptDownload) -> None:
        if not self._ready:
            # Looked up only: the gateway declares it (runners may not).
            await cabinets_store(self._js, create=False)
            self._ready = True
        await put_file_object(self._js, CABINETS_BUCKET, kept.stored.object, kept.path)
