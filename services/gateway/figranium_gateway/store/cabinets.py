"""SQL for ``cabinets`` and their items (``cabinet_items``): Figranium's named file stores.

Items' bytes live in the JetStream object store (``CABINETS_BUCKET``); a row names them
(``object`` for a file, ``entries[].object`` for a folder). Functions that remove rows
answer the objects those rows named, for the caller to delete once the transaction has
committed (the retention sweep removes what a crash in between leaves behind). Choosing an
item's name takes its cabinet's row lock (:func:`lock_cabinet`), so two writers cannot
pick the same unique name.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common.cabinet_names import unique_name
from figranium_common.config import Config
from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import epoch_ms
from figranium_gateway.store import tasks

ItemStatus = Literal["unuploaded", "uploaded"]

ITEM_COLUMNS = (
    "id, cabinet_id, name, kind, status, size, sha256, object, entries,"
    " source_task_id, source_run_id, source_url, created_at"
)
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"
_CABINET_COLUMNS = (
    "c.id, c.name, c.created_at, c.is_default,"
    " (SELECT count(*) FROM cabinet_items i WHERE i.cabinet_id = c.id) AS item_count,"
    " (SELECT count(*) FROM cabinet_items i"
    "  WHERE i.cabinet_id = c.id AND i.status = 'unuploaded') AS unuploaded_count"
)


class NameTaken(Exception):
    """Another cabinet already has this name (ignoring case)."""


class CabinetRefused(Exception):
    """A cabinet cannot be deleted this way; the message says why."""


def new_cabinet_id() -> str:
    return f"cab_{secrets.token_hex(10)}"


def new_item_id() -> str:
    return f"item_{secrets.token_hex(10)}"


def cabinet_out(row: DictRow) -> JsonObject:
    return {
        "id": row["id"],
        "name": row["name"],
        "createdAt": epoch_ms(row["created_at"]),
        "isDefault": row["is_default"],
        "itemCount": row["item_count"],
        "unuploadedCount": row["unuploaded_count"],
    }


def item_out(row: DictRow) -> JsonObject:
    """An item as the API shows it (Figranium's fields)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "status": row["status"],
        "size": row["size"],
        "createdAt": epoch_ms(row["created_at"]),
        "sourceTaskId": row["source_task_id"],
        "sourceRunId": row["source_run_id"],
        "sha256": row["sha256"],
    }


def item_objects(row: DictRow) -> list[str]:
    """The objects holding an item's bytes: a file's one, or each of a folder's files."""
    if row["object"] is not None:
        return [row["object"]]
    return [entry["object"] for entry in row["entries"] or []]


# --- cabinets -------------------------------------------------------------------------------


async def default_cabinet_id(conn: Connection) -> str:
    cur = await conn.execute("SELECT id FROM cabinets WHERE is_default")
    row = await cur.fetchone()
    assert row is not None, "migration 007 makes a default cabinet and none is deleted"
    return str(row["id"])


async def list_cabinets(pool: Pool) -> JsonObject:
    """``{defaultCabinetId, cabinets}``, oldest cabinet first (Figranium's order)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_CABINET_COLUMNS} FROM cabinets c ORDER BY created_at, id"
        )
        rows = await cur.fetchall()
        default = next(row["id"] for row in rows if row["is_default"])
        return {"defaultCabinetId": default, "cabinets": [cabinet_out(row) for row in rows]}


async def get_cabinet(conn: Connection, cabinet_id: str) -> JsonObject | None:
    cur = await conn.execute(
        f"SELECT {_CABINET_COLUMNS} FROM cabinets c WHERE id = %s", (cabinet_id,)
    )
    row = await cur.fetchone()
    return None if row is None else cabinet_out(row)


async def lock_cabinet(conn: Connection, cabinet_id: str) -> bool:
    """Lock the cabinet's row until the transaction ends; False when there is none."""
    cur = await conn.execute("SELECT 1 FROM cabinets WHERE id = %s FOR UPDATE", (cabinet_id,))
    return await cur.fetchone() is not None


async def create_cabinet(pool: Pool, name: str) -> JsonObject:
    """A new cabinet; raises :class:`NameTaken`."""
    try:
        async with pool.connection() as conn, conn.transaction():
            cabinet_id = new_cabinet_id()
            await conn.execute(
                "INSERT INTO cabinets (id, name) VALUES (%s, %s)", (cabinet_id, name)
            )
            created = await get_cabinet(conn, cabinet_id)
    except UniqueViolation:
        raise NameTaken(name) from None
    assert created is not None
    return created


async def rename_cabinet(pool: Pool, cabinet_id: str, name: str) -> JsonObject | None:
    """The renamed cabinet, None when there is none; raises :class:`NameTaken`."""
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE cabinets SET name = %s WHERE id = %s", (name, cabinet_id))
            return await get_cabinet(conn, cabinet_id)
    except UniqueViolation:
        raise NameTaken(name) from None


# --- items ----------------------------------------------------------------------------------


async def list_items(pool: Pool, cabinet_id: str) -> list[JsonObject] | None:
    """The cabinet's items, newest first; None when there is no such cabinet."""
    async with pool.connection() as conn:
        if await get_cabinet(conn, cabinet_id) is None:
            return None
        cur = await conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM cabinet_items WHERE cabinet_id = %s {_NEWEST_FIRST}",
            (cabinet_id,),
        )
        return [item_out(row) for row in await cur.fetchall()]


async def get_item(pool: Pool, cabinet_id: str, item_id: str) -> DictRow | None:
    """The item's whole row (``object``, ``entries`` included)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM cabinet_items WHERE cabinet_id = %s AND id = %s",
            (cabinet_id, item_id),
        )
        return await cur.fetchone()


async def taken_names(conn: Connection, cabinet_id: str) -> set[str]:
    """The cabinet's item names, lower-cased, for :func:`unique_name`."""
    cur = await conn.execute(
        "SELECT lower(name) AS name FROM cabinet_items WHERE cabinet_id = %s", (cabinet_id,)
    )
    return {row["name"] for row in await cur.fetchall()}


@dataclass(frozen=True)
class Usage:
    """Bytes the items take: in one cabinet, and in all of them."""

    cabinet: int
    total: int


async def usage(conn: Connection, cabinet_id: str) -> Usage:
    cur = await conn.execute(
        "SELECT COALESCE(sum(size) FILTER (WHERE cabinet_id = %s), 0) AS cabinet,"
        " COALESCE(sum(size), 0) AS total FROM cabinet_items",
        (cabinet_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return Usage(cabinet=int(row["cabinet"]), total=int(row["total"]))


async def sizes(pool: Pool) -> dict[str, int]:
    """Bytes each cabinet's items take, by cabinet id (cabinets without items are absent)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT cabinet_id, sum(size) AS size FROM cabinet_items GROUP BY cabinet_id"
        )
        return {row["cabinet_id"]: int(row["size"]) for row in await cur.fetchall()}


# Taken by whatever adds bytes to the cabinets (uploads, ingested downloads, zips), so that
# two writers in different cabinets cannot both pass the total quota with the room for one.
QUOTA_LOCK = "cabinets:quota"


@dataclass(frozen=True)
class Quotas:
    """CABINET_MAX_BYTES and CABINETS_MAX_TOTAL_BYTES."""

    cabinet: int
    total: int

    @classmethod
    def of(cls, config: Config) -> Quotas:
        return cls(cabinet=config.cabinet_max_bytes, total=config.cabinets_max_total_bytes)


def quota_refusal(used: Usage, size: int, quotas: Quotas) -> str | None:
    """Why ``size`` more bytes would not fit, given what is ``used``; None when they do."""
    if used.cabinet + size > quotas.cabinet:
        return f"the cabinet would pass CABINET_MAX_BYTES ({quotas.cabinet} bytes)"
    if used.total + size > quotas.total:
        return f"the cabinets would pass CABINETS_MAX_TOTAL_BYTES ({quotas.total} bytes)"
    return None


async def lock_quotas(conn: Connection) -> None:
    """Take QUOTA_LOCK until the transaction ends: check the quotas and add the item
    under it."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (QUOTA_LOCK,))


@dataclass(frozen=True)
class NewItem:
    """An item to add; its name is made unique in the cabinet when it is stored."""

    id: str
    cabinet_id: str
    name: str
    kind: Literal["file", "folder"]
    size: int
    sha256: str | None = None
    object: str | None = None
    entries: list[JsonObject] | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    source_url: str | None = None


async def insert_item(conn: Connection, item: NewItem) -> DictRow:
    """Store ``item`` under a name unique in its cabinet. The caller holds the cabinet's
    lock (:func:`lock_cabinet`) in this transaction, and has checked the quotas under it."""
    name = unique_name(item.name, await taken_names(conn, item.cabinet_id))
    cur = await conn.execute(
        "INSERT INTO cabinet_items (id, cabinet_id, name, kind, size, sha256, object, entries,"
        " source_task_id, source_run_id, source_url)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {ITEM_COLUMNS}",
        (
            item.id,
            item.cabinet_id,
            name,
            item.kind,
            item.size,
            item.sha256,
            item.object,
            None if item.entries is None else Jsonb(item.entries),
            item.source_task_id,
            item.source_run_id,
            item.source_url,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def set_status(
    pool: Pool, cabinet_id: str, item_ids: Collection[str], status: ItemStatus
) -> list[JsonObject] | None:
    """Set the status of those of ``item_ids`` in the cabinet; answers them, newest first
    (None when there is no such cabinet)."""
    async with pool.connection() as conn, conn.transaction():
        if not await lock_cabinet(conn, cabinet_id):
            return None
        cur = await conn.execute(
            "UPDATE cabinet_items SET status = %s WHERE cabinet_id = %s AND id = ANY(%s)"
            f" RETURNING {ITEM_COLUMNS}",
            (status, cabinet_id, list(item_ids)),
        )
        rows = sorted(await cur.fetchall(), key=lambda r: (r["created_at"], r["id"]), reverse=True)
        return [item_out(row) for row in rows]


async def delete_items(
    pool: Pool, cabinet_id: str, item_ids: Collection[str] | None
) -> list[str] | None:
    """Delete those of ``item_ids`` in the cabinet (None: all of them); answers the objects
    they named, None when there is no such cabinet."""
    async with pool.connection() as conn, conn.transaction():
        if not await lock_cabinet(conn, cabinet_id):
            return None
        return await _delete_rows(conn, cabinet_id, item_ids)


async def _delete_rows(
    conn: Connection, cabinet_id: str, item_ids: Collection[str] | None
) -> list[str]:
    if item_ids is None:
        cur = await conn.execute(
            "DELETE FROM cabinet_items WHERE cabinet_id = %s RETURNING object, entries",
            (cabinet_id,),
        )
    else:
        cur = await conn.execute(
            "DELETE FROM cabinet_items WHERE cabinet_id = %s AND id = ANY(%s)"
            " RETURNING object, entries",
            (cabinet_id, list(item_ids)),
        )
    return [name for row in await cur.fetchall() for name in item_objects(row)]


async def delete_cabinet(
    pool: Pool, cabinet_id: str, target_id: str, *, migrate: bool
) -> list[str] | None:
    """Delete the cabinet (raises :class:`CabinetRefused`), moving its items to the target
    (names made unique there) or deleting them, and make tasks and their versions name the
    target instead. Answers the objects of the deleted items; None when there is no such
    cabinet."""
    async with pool.connection() as conn, conn.transaction():
        # Both rows locked in one statement, in id order: two opposite deletes cannot deadlock.
        cur = await conn.execute(
            "SELECT id, is_default FROM cabinets WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            ([cabinet_id, target_id],),
        )
        found = {row["id"]: row["is_default"] for row in await cur.fetchall()}
        if cabinet_id not in found:
            return None
        if target_id == cabinet_id or target_id not in found:
            raise CabinetRefused(
                "choose a different, existing replacement cabinet (targetCabinetId)"
            )
        if found[cabinet_id]:
            raise CabinetRefused("the default cabinet cannot be deleted")
        if migrate:
            await _move_items(conn, cabinet_id, target_id)
            doomed = []
        else:
            doomed = await _delete_rows(conn, cabinet_id, None)
        await tasks.move_cabinet_references(conn, cabinet_id, target_id)
        await conn.execute("DELETE FROM cabinets WHERE id = %s", (cabinet_id,))
        return doomed


async def _move_items(conn: Connection, from_id: str, to_id: str) -> None:
    """Move every item of ``from_id`` to ``to_id``, oldest first, each under a name unique
    there; both cabinets are locked."""
    taken = await taken_names(conn, to_id)
    cur = await conn.execute(
        "SELECT id, name FROM cabinet_items WHERE cabinet_id = %s ORDER BY created_at, id",
        (from_id,),
    )
    for row in await cur.fetchall():
        name = unique_name(row["name"], taken)
        taken.add(name.lower())
        await conn.execute(
            "UPDATE cabinet_items SET cabinet_id = %s, name = %s WHERE id = %s",
            (to_id, name, row["id"]),
        )


# --- retention (figranium_gateway.cabinet_cleanup) ------------------------------------------


async def delete_items_older_than(conn: Connection, days: float) -> list[str]:
    """Delete every item made more than ``days`` ago; answers the objects they named."""
    cur = await conn.execute(
        "DELETE FROM cabinet_items WHERE created_at < now() - make_interval(secs => %s)"
        " RETURNING object, entries",
        (days * 86400,),
    )
    return [name for row in await cur.fetchall() for name in item_objects(row)]


async def referenced_objects(conn: Connection) -> set[str]:
    """Every object an item names: files' own, and folders' entries'."""
    cur = await conn.execute(
        "SELECT object AS name FROM cabinet_items WHERE object IS NOT NULL"
        " UNION ALL SELECT entry->>'object' FROM cabinet_items,"
        " jsonb_array_elements(COALESCE(entries, '[]'::jsonb)) AS entry"
    )
    return {row["name"] for row in await cur.fetchall()}
