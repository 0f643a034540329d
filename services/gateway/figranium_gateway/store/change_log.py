"""SQL reading ``execution_changes``, the change log behind ``GET /api/executions/stream``.

Changes are written by ``figranium_common.changelog`` (the scheduler writes them too), in
the transaction that made each change; see ``figranium_gateway.changes`` for why their ids
follow commit order.
"""

from __future__ import annotations

from datetime import timedelta

from psycopg.rows import DictRow

from figranium_common.db import Pool


async def changes_since(pool: Pool, last_id: int, limit: int) -> list[DictRow]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, execution_id, kind, payload FROM execution_changes"
            " WHERE id > %s ORDER BY id LIMIT %s",
            (last_id, limit),
        )
        return list(await cur.fetchall())


async def latest_change_id(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT COALESCE(max(id), 0) AS id FROM execution_changes")
        row = await cur.fetchone()
        return 0 if row is None else int(row["id"])


async def prune_changes(pool: Pool, older_than: timedelta) -> int:
    """Forget changes older than ``older_than``; a client resuming from before misses them."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM execution_changes WHERE created_at < now() - %s", (older_than,)
        )
        return cur.rowcount
