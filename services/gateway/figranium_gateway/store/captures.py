"""SQL for ``captures``: the index of the captures bucket.

Pages and the API list captures from here, newest first (``created_at``, then ``name``,
both descending, which the table's indexes serve), instead of listing the bucket. Rows
are written as runs report what they stored; writes are idempotent (a redelivered event
adds nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from figranium_common.capture_models import StoredCapture
from figranium_common.changelog import record_each
from figranium_common.db import Connection, Pool


@dataclass(frozen=True)
class Indexed:
    """One capture and the execution that stored it."""

    execution_id: str
    capture: StoredCapture


@dataclass(frozen=True)
class Cursor:
    """The last capture of a page: the next page starts after it."""

    created_at: int
    name: str


_INSERT = (
    "INSERT INTO captures (name, execution_id, kind, size, created_at)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])"
    " ON CONFLICT (name) DO NOTHING RETURNING name"
)


async def insert_rows(conn: Connection, rows: Sequence[Indexed]) -> AsyncCursor[DictRow]:
    """Index ``rows`` (those not indexed before); the cursor returns their names, for a
    caller that wants them (one in pipeline mode need not wait for it)."""
    return await conn.execute(
        _INSERT,
        (
            [row.capture.name for row in rows],
            [row.execution_id for row in rows],
            [row.capture.kind for row in rows],
            [row.capture.size for row in rows],
            [row.capture.at for row in rows],
        ),
    )


async def insert_captures(conn: Connection, rows: Sequence[Indexed]) -> set[str]:
    """Index ``rows``; returns the names that were not indexed before."""
    if not rows:
        return set()
    cur = await insert_rows(conn, rows)
    return {row["name"] for row in await cur.fetchall()}


def change_extra(capture: StoredCapture) -> dict[str, str | int]:
    """What the live stream's ``capture`` event says of a capture, besides its execution."""
    return {
        "name": capture.name,
        "kind": capture.kind,
        "size": capture.size,
        "url": f"/captures/{capture.name}",
    }


async def record_captured(pool: Pool, execution_id: str, stored: Sequence[StoredCapture]) -> int:
    """Index what a run reports it stored while it ran, with one ``capture`` change per
    capture not indexed before (a redelivery adds neither); returns how many were new."""
    async with pool.connection() as conn, conn.transaction():
        new = await insert_captures(conn, [Indexed(execution_id, c) for c in stored])
        # Last in the transaction: change ids follow commit order (see changes.py).
        await record_each(
            conn, "capture", [(execution_id, change_extra(c)) for c in stored if c.name in new]
        )
        return len(new)


async def index_missing(pool: Pool, rows: Sequence[Indexed]) -> int:
    """Index ``rows`` not indexed yet (a backfill); returns how many were new."""
    async with pool.connection() as conn:
        return len(await insert_captures(conn, rows))


async def newest(
    pool: Pool,
    kinds: Collection[str],
    *,
    execution_id: str | None = None,
    after: Cursor | None = None,
    limit: int | None = None,
) -> list[DictRow]:
    """Captures of ``kinds`` (of one execution, or all), newest first, after ``after``."""
    where = ["kind = ANY(%s)"]
    params: list[object] = [list(kinds)]
    if execution_id is not None:
        where.append("execution_id = %s")
        params.append(execution_id)
    if after is not None:
        where.append("(created_at, name) < (%s, %s)")
        params += [after.created_at, after.name]
    params.append(limit)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT name, execution_id, kind, size, created_at FROM captures"
            f" WHERE {' AND '.join(where)} ORDER BY created_at DESC, name DESC LIMIT %s",
            params,
        )
        return list(await cur.fetchall())


async def forget(conn: Connection, names: Collection[str]) -> int:
    """Drop the rows of deleted objects; returns how many there were."""
    if not names:
        return 0
    cur = await conn.execute("DELETE FROM captures WHERE name = ANY(%s)", (list(names),))
    return cur.rowcount


async def forget_names(pool: Pool, names: Collection[str]) -> int:
    async with pool.connection() as conn:
        return await forget(conn, names)
