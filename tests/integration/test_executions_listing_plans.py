"""The executions listing at 100,000 rows: every filter the console uses is an index scan
that stops after its page, never a sequential scan and a sort of the table.

On a database of its own (the shared PostgreSQL server, not the shared stack's
database), filled with ``generate_series``; the plans are those of the store's own SQL.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from figranium_common import db
from figranium_devstack.postgres import LocalPostgres
from figranium_gateway.execution_page import ExecutionQuery, Position
from figranium_gateway.store import executions as execution_store
from tests.integration.plans import explain, filled_pool, nodes
from tests.integration.stack import fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROWS = 100_000
NOW = datetime(2030, 1, 1, tzinfo=UTC)

# Every third row shares its creation time with two others (ties broken by id). Half
# the rows are one task's, as a task scheduled every minute makes them; the rest are 250
# tasks of 200 rows. 1 % errors (all the busy task's), 0.1 % anti-bot, the rest success.
_FILL = f"""
INSERT INTO executions (id, task_id, task_name, source, phase, status, outcome,
                        created_at, started_at, finished_at, duration_ms, attempts,
                        task_snapshot)
SELECT 'exec_' || lpad(g::text, 6, '0'),
       CASE WHEN mod(g, 2) = 0 THEN 'busy' ELSE 't' || mod(g, 500) END, 'Task',
       'api', 'finished', 200,
       CASE WHEN mod(g, 1000) = 7 THEN 'anti_bot' WHEN mod(g, 100) = 4 THEN 'error'
            ELSE 'success' END,
       %(now)s - (g / 3) * interval '1 second', %(now)s - (g / 3) * interval '1 second',
       %(now)s - (g / 3) * interval '1 second' + interval '2 seconds', 2000, 1,
       '{{"url": "https://example.com"}}'::jsonb
FROM generate_series(1, {ROWS}) g
"""

MIDDLE = Position(NOW - timedelta(seconds=ROWS // 6), f"exec_{ROWS // 2:06d}")
WINDOW = {"created_from": NOW - timedelta(days=1), "created_to": NOW - timedelta(hours=3)}
# No page may read more than this many rows: 1 % of the table.
MAX_ROWS_READ = ROWS // 100

# name → (filters, whether the index must give the order itself: no Sort at all). A small
# task's rows may be fetched by bitmap and sorted; they are few, bounded by the task.
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "newest": ({}, True),
    "time": (WINDOW, True),
    "busy task": ({"task_id": "busy"}, True),
    "busy task + time": ({"task_id": "busy", **WINDOW}, True),
    "small task": ({"task_id": "t43"}, False),
    "small task + time": ({"task_id": "t43", **WINDOW}, False),
    "outcome": ({"outcome": "anti_bot"}, True),
    "outcome + time": ({"outcome": "error", **WINDOW}, True),
    "status (an outcome)": ({"status": "anti_bot"}, True),
    "busy task + outcome": ({"task_id": "busy", "outcome": "error"}, True),
    "small task + outcome": ({"task_id": "t7", "outcome": "anti_bot"}, False),
}
_SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


@pytest.fixture(scope="module")
def database(postgres: LocalPostgres) -> Iterator[str]:
    yield fresh_database(postgres, "executions_listing_plans")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(database: str) -> AsyncIterator[db.Pool]:
    async with filled_pool(database, _FILL, "executions", {"now": NOW}) as opened:
        yield opened


@pytest.mark.parametrize("cursor", [False, True], ids=["first page", "after a cursor"])
@pytest.mark.parametrize("name", list(CASES))
async def test_every_filter_pages_by_index(
    pool: db.Pool, name: str, cursor: bool, record_property: Callable[[str, object], None]
) -> None:
    filters, ordered = CASES[name]
    query = ExecutionQuery(**filters, after=MIDDLE if cursor else None)
    sql, params = execution_store.listing_statement(query)
    top, took = await explain(pool, sql, params)
    found = list(nodes(top))
    kinds = [node["Node Type"] for node in found]
    assert top["Node Type"] == "Limit" and top["Actual Rows"] <= query.limit + 1
    assert "Seq Scan" not in kinds, (name, kinds)
    if ordered:
        assert not any("Sort" in kind for kind in kinds) and "Index Scan" in kinds, (name, kinds)
    read = int(
        sum(
            node["Actual Rows"]
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
            for node in found
            if node["Node Type"] in _SCANS
        )
    )
    assert read <= MAX_ROWS_READ, (name, kinds, read)
    index = next(n["Index Name"] for n in found if "Index Name" in n)
    record_property(
        "figures",
        f"executions listing at {ROWS:,} rows, {name}"
        f"{' after a cursor' if cursor else ''}: {index}, {read} rows read,"
        f" {took:.2f} ms in PostgreSQL",
    )


async def test_pages_of_fifty_walk_a_task_and_the_whole_table(
    pool: db.Pool, record_property: Callable[[str, object], None]
) -> None:
    """The store's pages join up to the table's own order, ties included."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM executions ORDER BY created_at DESC, id DESC LIMIT 1000"
        )
        newest = [r["id"] for r in await cur.fetchall()]
    walked: list[str] = []
    after: Position | None = None
    took: list[float] = []
    for _ in range(20):
        started = time.perf_counter()
        page, after = await execution_store.list_executions(pool, ExecutionQuery(after=after))
        took.append((time.perf_counter() - started) * 1000)
        assert len(page) == 50 and after is not None
        walked += [str(e["id"]) for e in page]
    assert walked == newest

    task: list[str] = []
    after = None
    while True:
        page, after = await execution_store.list_executions(
            pool, ExecutionQuery(task_id="t43", after=after)
        )
        task += [str(e["id"]) for e in page]
        if after is None:
            break
    assert len(task) == 200 and len(set(task)) == len(task)
    assert task == sorted(task)  # one task's ids grow with age here
    record_property(
        "figures",
        f"executions listing at {ROWS:,} rows: 20 pages of 50 through the store,"
        f" median {sorted(took)[len(took) // 2]:.1f} ms, max {max(took):.1f} ms",
    )
