"""Filling a benchmark database: tasks and finished executions by the thousand, in one
``generate_series`` statement each, so that 100,000 rows take seconds.

The gateway benchmark and the console's speed figure (``benchmarks.console``) read the
same rows: tasks ``bench_gw_<n>``, executions ``exec_bench_<n>`` spread over the first
1,000 tasks, ten seconds apart, each with a result of 50 items.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

TASK_BODY = {
    "mode": "agent",
    "url": "https://example.com/products?page=1",
    "wait": 1,
    "actions": [
        {"type": "click", "selector": "#accept-cookies"},
        {"type": "type", "selector": "input[name=q]", "value": "{$query}"},
        {"type": "press", "key": "Enter"},
        {"type": "wait_selector", "selector": ".results li", "value": "10"},
        {"type": "scroll", "value": "2000", "key": "500"},
        {"type": "screenshot", "label": "results"},
    ],
    "variables": {"query": {"type": "string", "value": "laptops"}},
    "extractionScript": (
        "return Array.from(document.querySelectorAll('.results li')).map(li => ({"
        " title: li.querySelector('h3').textContent, price: li.dataset.price }))"
    ),
    "statelessExecution": False,
}
RESULT = {
    "data": [{"title": f"Product {i}", "price": f"{i}.99"} for i in range(50)],
    "final_url": "https://example.com/products?page=1",
    "screenshot_url": "/captures/screenshot.png",
    "logs": ["Navigating to https://example.com/products?page=1"] * 6,
    "outcome": "success",
}


def _fill(
    conn: psycopg.Connection[Any],
    table: str,
    have: LiteralString,
    insert: LiteralString,
    params: tuple[object, ...],
    upto: int,
) -> None:
    """Fill ``table`` up to row ``upto``: the numbers past what ``have`` counts go to
    ``insert`` as its last two parameters (the bounds of its ``generate_series``); then the
    planner's statistics of the table are brought up to date."""
    row = conn.execute(have).fetchone()
    start = (row[0] if row else 0) + 1
    conn.execute(insert, (*params, start, upto))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def fill_tasks(conn: psycopg.Connection[Any], upto: int) -> None:
    _fill(
        conn,
        "tasks",
        "SELECT count(*) FROM tasks WHERE id LIKE 'bench_gw_%'",
        "INSERT INTO tasks (id, body, created_at, updated_at)"
        " SELECT 'bench_gw_' || g,"
        "  %s::jsonb"
        "  || jsonb_build_object('name', 'Task ' || g, 'description', 'benchmark task ' || g),"
        "  now() - g * interval '1 minute', now() - g * interval '1 minute'"
        " FROM generate_series(%s::int, %s::int) g",
        (Jsonb(TASK_BODY),),
        upto,
    )


def fill_executions(conn: psycopg.Connection[Any], upto: int) -> None:
    _fill(
        conn,
        "executions",
        "SELECT count(*) FROM executions",
        "INSERT INTO executions (id, task_id, task_name, mode, source, url, method, path, phase,"
        " status, outcome, created_at, started_at, finished_at, duration_ms, attempts,"
        " task_snapshot, variables, result)"
        " SELECT 'exec_bench_' || g, 'bench_gw_' || (mod(g, 1000) + 1),"
        "  'Task ' || (mod(g, 1000) + 1),"
        "  'agent', 'api', 'https://example.com/products?page=1', 'POST',"
        "  '/api/tasks/bench_gw_' || (mod(g, 1000) + 1) || '/api', 'finished', 200, 'success',"
        "  now() - g * interval '10 seconds', now() - g * interval '10 seconds',"
        "  now() - g * interval '10 seconds' + interval '1.5 seconds', 1500, 1,"
        "  %s::jsonb, '{}'::jsonb, %s::jsonb"
        " FROM generate_series(%s::int, %s::int) g",
        (Jsonb(TASK_BODY), Jsonb(RESULT)),
        upto,
    )
