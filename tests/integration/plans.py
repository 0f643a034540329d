"""Query plans of the store's own SQL on a database filled for the purpose: the plan
tests' shared parts (a filled pool, EXPLAIN ANALYZE as JSON, the plan's nodes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from figranium_common import db


@asynccontextmanager
async def filled_pool(
    database: str, fill: str, table: str, params: Mapping[str, Any] | None = None
) -> AsyncIterator[db.Pool]:
    """A pool on ``database``, migrated, ``fill`` run and ``table`` analyzed."""
    opened = await db.open_pool(database, max_size=2)
    try:
        await db.apply_migrations(opened)
        async with opened.connection() as conn:
            await conn.execute(fill.encode(), params)
            await conn.execute(f"VACUUM ANALYZE {table}".encode())
        yield opened
    finally:
        await opened.close()


async def explain(
    pool: db.Pool, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> tuple[dict[str, Any], float]:
    """The executed plan's top node and PostgreSQL's execution time in ms."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}".encode(), params)
        row = await cur.fetchone()
    assert row is not None
    explained = row["QUERY PLAN"]
    document = explained if isinstance(explained, list) else json.loads(explained)
    return document[0]["Plan"], float(document[0]["Execution Time"])


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The plan's nodes, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)
