"""SQL for ``execution_events``: every run event stored, keyed by execution, attempt and
sequence number, so a redelivered event is stored once."""

from __future__ import annotations

from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonMapping
from figranium_common.models import LogLine

# The ids again as ``= ANY``, so executions are looked up by index, not scanned (as
# changelog's RECORD_EACH explains).
INSERT_LINES = (
    "INSERT INTO execution_events (execution_id, attempt, seq, type, payload)"
    " SELECT v.execution_id, v.attempt, v.seq, 'log', v.payload"
    " FROM ROWS FROM (unnest(%s::text[]), unnest(%s::int[]), unnest(%s::int[]),"
    "  jsonb_array_elements(%s::jsonb)) AS v (execution_id, attempt, seq, payload)"
    " WHERE EXISTS (SELECT 1 FROM executions e WHERE e.id = v.execution_id"
    "  AND e.id = ANY(%s::text[]))"
    " ON CONFLICT DO NOTHING"
    " RETURNING execution_id, attempt, seq"
)

Key = tuple[str, int, int]  # execution id, attempt, sequence number


async def insert_event(
    conn: Connection, key: Key, kind: str, payload: JsonMapping
) -> AsyncCursor[DictRow]:
    """The insert's cursor: one row if the event is new. In a pipeline, reading it waits
    for the server."""
    execution_id, attempt, seq = key
    # Inserting through SELECT skips events of executions deleted meanwhile; ON CONFLICT
    # covers both a redelivered event and a second result for the same execution.
    return await conn.execute(
        "INSERT INTO execution_events (execution_id, attempt, seq, type, payload)"
        " SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM executions WHERE id = %s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (execution_id, attempt, seq, kind, Jsonb(payload), execution_id),
    )


async def insert_lines(
    conn: Connection, keys: list[Key], lines: list[LogLine]
) -> AsyncCursor[DictRow]:
    """Insert log lines (payloads of :meth:`LogEvent.each`) under ``keys``; the cursor
    returns the keys of the new ones. Lines of executions deleted meanwhile are skipped."""
    ids = [key[0] for key in keys]
    return await conn.execute(
        INSERT_LINES,
        # The lines as one JSON array: cheaper to send than a jsonb[] (see changelog).
        (ids, [key[1] for key in keys], [key[2] for key in keys], Jsonb(lines), ids),
    )


async def has_event(pool: Pool, execution_id: str, attempt: int, seq: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM execution_events WHERE execution_id = %s AND attempt = %s AND seq = %s",
            (execution_id, attempt, seq),
        )
        return await cur.fetchone() is not None


async def log_lines(conn: Connection, execution_id: str) -> list[str]:
    """The execution's log, every attempt's lines in order."""
    cur = await conn.execute(
        "SELECT payload->>'line' AS line FROM execution_events"
        " WHERE execution_id = %s AND type = 'log' ORDER BY attempt, seq",
        (execution_id,),
    )
    return [row["line"] for row in await cur.fetchall()]
