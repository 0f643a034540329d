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
    Quotas,
    default_cabinet_id,
    insert_item,
    lock_cabinet,
    lock_quotas,
    quota_refusal,
    usage,
)


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
        await lock_quotas(conn)
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
            refused = quota_refusal(await usage(conn, cabinet_id), download.size, quotas)
            if refused is not None:
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
