"""SQL for cabinet zip and unzip: chosen items replaced, in one transaction, by the one
archive or folder made of their bytes (``figranium_gateway.routes.cabinet_archives``).

The new item's bytes are stored before its row, and the old items' objects are deleted
after theirs: a failure before the commit leaves the old items whole (the new objects are
the caller's to delete), one after it leaves only objects the retention sweep removes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from psycopg.rows import DictRow

from figranium_common.db import Pool
from figranium_gateway.store.cabinets import (
    ITEM_COLUMNS,
    NewItem,
    Quotas,
    insert_item,
    item_objects,
    lock_cabinet,
    lock_quotas,
    quota_refusal,
    usage,
)


class ItemsChanged(Exception):
    """An item to replace was deleted (or replaced) meanwhile."""


class OverQuota(Exception):
    """The new item would pass a quota; the message names it."""


@dataclass(frozen=True)
class Replaced:
    """The new item's row, and the old items' objects, for the caller to delete."""

    row: DictRow
    doomed: list[str]


async def items_in(pool: Pool, cabinet_id: str, item_ids: Collection[str]) -> list[DictRow] | None:
    """Those of ``item_ids`` in the cabinet, oldest first (whole rows); None when there is
    no such cabinet."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM cabinets WHERE id = %s", (cabinet_id,))
        if await cur.fetchone() is None:
            return None
        cur = await conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM cabinet_items WHERE cabinet_id = %s AND id = ANY(%s)"
            " ORDER BY created_at, id",
            (cabinet_id, list(item_ids)),
        )
        return await cur.fetchall()


async def replace_items(
    pool: Pool, old_ids: Collection[str], new: NewItem, quotas: Quotas
) -> Replaced:
    """Delete the items ``old_ids`` of ``new``'s cabinet and add ``new`` (its name made
    unique there) in one transaction. Raises :class:`ItemsChanged` when the cabinet or
    one of the items is gone, :class:`OverQuota` when ``new`` would not fit once they are
    deleted; nothing is changed then."""
    async with pool.connection() as conn, conn.transaction():
        await lock_quotas(conn)
        if not await lock_cabinet(conn, new.cabinet_id):
            raise ItemsChanged(f"the cabinet {new.cabinet_id!r} was deleted")
        cur = await conn.execute(
            "DELETE FROM cabinet_items WHERE cabinet_id = %s AND id = ANY(%s)"
            " RETURNING object, entries",
            (new.cabinet_id, list(old_ids)),
        )
        rows = await cur.fetchall()
        if len(rows) != len(set(old_ids)):
            raise ItemsChanged("an item was deleted or changed meanwhile")
        refusal = quota_refusal(await usage(conn, new.cabinet_id), new.size, quotas)
        if refusal is not None:
            raise OverQuota(refusal)
        row = await insert_item(conn, new)
        return Replaced(row, [name for old in rows for name in item_objects(old)])
