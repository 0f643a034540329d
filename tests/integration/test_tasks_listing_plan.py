"""The console's task list at 10,000 tasks: without a search it reads the newest rows
from the index (tasks_newest) and stops, never a sequential scan and a sort of the table.

On a database of its own on the shared PostgreSQL server, filled with
``generate_series``; the plans are those of the store's own SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from figranium_common import db
from figranium_devstack.postgres import LocalPostgres
from figranium_gateway.store import tasks as task_store
from tests.integration.plans import explain, filled_pool, nodes
from tests.integration.stack import fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROWS = 10_000
LIMIT = 201  # the console's list: 200 shown, one more to know there are more

# Every fourth task shares its update time with three others (ties broken by id).
_FILL = f"""
INSERT INTO tasks (id, body, updated_at)
SELECT 'task_' || lpad(g::text, 5, '0'),
       jsonb_build_object('name', 'Task ' || g, 'url', 'https://example.com/' || g),
       timestamptz '2030-01-01' - (g / 4) * interval '1 minute'
FROM generate_series(1, {ROWS}) g
"""


@pytest.fixture(scope="module")
def database(postgres: LocalPostgres) -> Iterator[str]:
    yield fresh_database(postgres, "tasks_listing_plan")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(database: str) -> AsyncIterator[db.Pool]:
    async with filled_pool(database, _FILL, "tasks") as opened:
        yield opened


async def test_the_unsearched_list_reads_its_rows_from_the_index(
    pool: db.Pool, record_property: Callable[[str, object], None]
) -> None:
    top, took = await explain(pool, *task_store.search_statement("", LIMIT))
    found = list(nodes(top))
    kinds = [node["Node Type"] for node in found]
    assert top["Node Type"] == "Limit" and top["Actual Rows"] == LIMIT
    assert "Seq Scan" not in kinds and not any("Sort" in kind for kind in kinds), kinds
    scan = next(node for node in found if node["Node Type"] == "Index Scan")
    assert scan["Index Name"] == "tasks_newest" and scan["Actual Rows"] == LIMIT
    record_property(
        "figures",
        f"task list at {ROWS:,} tasks, no search: {scan['Index Name']},"
        f" {scan['Actual Rows']} rows read, {took:.2f} ms in PostgreSQL",
    )

    # The store answers in the table's own order, ties included.
    listed = await task_store.search_task_summaries(pool, "", LIMIT)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM tasks ORDER BY updated_at DESC, id LIMIT %s", (LIMIT,)
        )
        newest = [row["id"] for row in await cur.fetchall()]
    assert [row["id"] for row in listed] == newest


async def test_a_search_still_filters_by_id_and_name(pool: db.Pool) -> None:
    found = await task_store.search_task_summaries(pool, "task 999", LIMIT)
    assert sorted(row["name"] for row in found) == [
        "Task 999",
        *(f"Task 999{n}" for n in range(10)),
    ]
    assert [row["id"] for row in await task_store.search_task_summaries(pool, "_00999", 5)] == [
        "task_00999"
    ]
    assert await task_store.search_task_summaries(pool, "%", 5) == []
