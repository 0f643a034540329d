"""SQL for what runs do to cabinets: their downloads become items (names made unique,
quotas checked), and the items they uploaded are marked.

Both are safe to repeat for a redelivered result: an item keeps its runner-given id, so one
stored before is found and left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from figranium_common.cabinet_models import StoredDownload
from figranium_common.db import Pool
from figranium_gateway.store.cabinets import (
    NewItem,
    default_cabinet_id,
    insert_item,
    lock_cabinet,
    usage,
)

# Taken by whatever adds bytes to the cabinets, so that two writers in different cabinets
# cannot both pass the total quota with the room for one.
CABINET_QUOTA_LOCK = "cabinets:quota"


@dataclass(frozen=True)
class Quotas:
    """CABINET_MAX_BYTES and CABINETS_MAX_TOTAL_BYTES."""

    cabinet: int
    total: int


@dataclass(frozen=True)
class Placed:
    """Where a download went: the cabinet and the item's name; or why it was refused."""

    download: StoredDownload
    cabinet_id: str
    name: str | None = None
    refused: str | None = None


async def place_downloads(
    pool: Pool,
    downloads: Sequence[StoredDownload],
    quotas: Quotas,
    run_id: str,
) -> list[Placed]:
    """Make each download of the execution ``run_id`` an item of its cabinet (the default
    one when that cabinet is gone), under a name unique there, its source the run and its
    task, unless it would pass a quota: then it is refused and its object is the caller's
    to delete. One stored before (same id) is answered as it is."""
    placed: list[Placed] = []
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CABINET_QUOTA_LOCK,))
        cur = await conn.execute("SELECT task_id FROM executions WHERE id = %s", (run_id,))
        execution = await cur.fetchone()
        task_id = None if execution is None else execution["task_id"]
        cur = await conn.execute(
            "SELECT id, cabinet_id, name FROM cabinet_items WHERE id = ANY(%s)",
            ([d.item_id for d in downloads],),
        )
        earlier = {row["id"]: row for row in await cur.fetchall()}
        default = await default_cabinet_id(conn)
        for download in downloads:
            row = earlier.get(download.item_id)
            if row is not None:
                placed.append(Placed(download, row["cabinet_id"], row["name"]))
                continue
            cabinet_id = download.cabinet_id
            if not cabinet_id or not await lock_cabinet(conn, cabinet_id):
                cabinet_id = default
                await lock_cabinet(conn, cabinet_id)
            used = await usage(conn, cabinet_id)
            if used.cabinet + download.size > quotas.cabinet:
                refused = f"the cabinet would pass CABINET_MAX_BYTES ({quotas.cabinet})"
                placed.append(Placed(download, cabinet_id, refused=refused))
                continue
            if used.total + download.size > quotas.total:
                refused = f"the cabinets would pass CABINETS_MAX_TOTAL_BYTES ({quotas.total})"
                placed.append(Placed(download, cabinet_id, refused=refused))
                continue
            item = await insert_item(
                conn,
                NewItem(
                    id=download.item_id,
                    cabinet_id=cabinet_id,
                    name=download.name,
                    kind="file",
                    size=download.size,
                    sha256=download.sha256,
                    object=download.object,
                    source_task_id=task_id,
                    source_run_id=run_id,
                    source_url=download.url,
                ),
            )
            placed.append(Placed(download, cabinet_id, item["name"]))
    return placed


async def mark_uploaded(pool: Pool, item_ids: Sequence[str]) -> int:
    """Mark the items that still exist of ``item_ids`` as uploaded; how many there were."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE cabinet_items SET status = 'uploaded' WHERE id = ANY(%s)", (list(item_ids),)
        )
        return cur.rowcount
