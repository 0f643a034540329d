"""SQL for ``executions``: one row per run, from queued to finished.

The queuing insert itself is ``figranium_common.queue``'s (the scheduler queues runs
too); every deletion logs its change in its own transaction (``changelog``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from typing import TypedDict, get_args

from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common import queue
from figranium_common.changelog import record_deleted
from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonMapping, JsonObject
from figranium_common.models import Outcome, Phase, ResultEvent, StartedEvent, epoch_ms
from figranium_gateway.execution_page import ExecutionQuery, Position
from figranium_gateway.store import events, webhooks
from figranium_gateway.store.results import WHOLE_RESULT

_LIST_COLUMNS = (
    "id, task_id, task_name, mode, source, url, method, path, phase, status, outcome,"
    " created_at, started_at, finished_at, duration_ms, attempts"
)
_DETAIL_COLUMNS = f"{_LIST_COLUMNS}, task_snapshot, variables, result, webhook_url"

# What a synchronous run answers, once finished; ``result`` only then (a small row before).
OUTCOME_COLUMNS = (
    f"id, phase, outcome, status, CASE WHEN phase = 'finished' THEN {WHOLE_RESULT} END AS result"
)

STATUS_BY_OUTCOME = {"success": 200, "stopped": 200, "error": 422, "anti_bot": 422, "crashed": 500}


class RunOutcome(TypedDict):
    """A row of :data:`OUTCOME_COLUMNS`: what a synchronous run answers."""

    id: str
    phase: Phase
    outcome: Outcome | None
    status: int | None
    result: JsonObject | None  # once finished


def outcome_of(row: DictRow) -> RunOutcome:
    return RunOutcome(
        id=row["id"],
        phase=row["phase"],
        outcome=row["outcome"],
        status=row["status"],
        result=row["result"],
    )


def _execution_out(row: DictRow, *, detail: bool) -> JsonObject:
    out: JsonObject = {
        "id": row["id"],
        "timestamp": epoch_ms(row["created_at"]),
        "method": row["method"],
        "path": row["path"],
        "status": row["status"],
        "durationMs": row["duration_ms"],
        "source": row["source"],
        "mode": row["mode"],
        "taskId": row["task_id"],
        "taskName": row["task_name"],
        "url": row["url"],
        "phase": row["phase"],
        "outcome": row["outcome"],
        "startedAt": epoch_ms(row["started_at"]),
        "finishedAt": epoch_ms(row["finished_at"]),
        "attempts": row["attempts"],
    }
    if detail:
        out["taskSnapshot"] = row["task_snapshot"]
        out["variables"] = row["variables"]
        out["result"] = row["result"]
    return out


class QueueFull(Exception):
    """As many executions as the queue limit allows are queued or running already."""


async def create_execution(
    conn: Connection, new: queue.NewExecution, *, queue_limit: int = 0
) -> bool:
    """Insert the queued execution ``new``, with its change logged, in one statement on
    the autocommit ``conn``; False when the id is already taken. With a ``queue_limit``
    (0: none), raises :class:`QueueFull` instead of inserting when that many executions
    are unfinished. Only when nothing was inserted is the id looked up, to tell the two
    apart.
    """
    inserted = await queue.insert_execution(conn, new, unfinished_below=queue_limit)
    if await inserted.fetchone() is not None:
        return True
    if queue_limit > 0 and not await _execution_exists(conn, new.execution_id):
        raise QueueFull
    return False


async def _execution_exists(conn: Connection, execution_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM executions WHERE id = %s", (execution_id,))
    return await cur.fetchone() is not None


async def run_outcome(pool: Pool, execution_id: str) -> RunOutcome | None:
    """What a synchronous run answers: ``id``, ``phase``, ``outcome``, ``status`` and, once
    finished, ``result``; None when there is no such execution."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {OUTCOME_COLUMNS} FROM executions WHERE id = %s", (execution_id,)
        )
        row = await cur.fetchone()
    return None if row is None else outcome_of(row)


async def get_execution(pool: Pool, execution_id: str) -> JsonObject | None:
    """The execution with its log and, when it asked for a webhook, the delivery's state."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_DETAIL_COLUMNS} FROM executions WHERE id = %s", (execution_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return None
        out = _execution_out(row, detail=True)
        out["logs"] = await events.log_lines(conn, execution_id)
        if row["webhook_url"] is not None:
            out["webhook"] = await webhooks.delivery_state(conn, execution_id)
        return out


async def list_executions(
    pool: Pool, query: ExecutionQuery
) -> tuple[list[JsonObject], Position | None]:
    """A page of the listing, newest first (ties by id), and where the next page starts
    when there is one."""
    sql, params = listing_statement(query)
    async with pool.connection() as conn:
        cur = await conn.execute(sql.encode(), params)
        rows = await cur.fetchall()
    page = rows[: query.limit]
    more = len(rows) > query.limit
    after = Position(page[-1]["created_at"], page[-1]["id"]) if more else None
    return [_execution_out(row, detail=False) for row in page], after


def listing_statement(query: ExecutionQuery) -> tuple[str, list[object]]:
    """The SQL of a listing page and its parameters: one row more than the page, to tell
    whether another follows. Every filter is a condition one of the listing's indexes
    serves (migration 009)."""
    where, params = _listing_conditions(query)
    sql = f"SELECT {_LIST_COLUMNS} FROM executions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(query.limit + 1)
    return sql, params


def _listing_conditions(query: ExecutionQuery) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if query.status:
        column, value = _status_condition(query.status)
        where.append(f"{column} = %s")
        params.append(value)
    for column, given in (
        ("task_id = %s", query.task_id),
        ("outcome = %s", query.outcome),
        ("created_at >= %s", query.created_from),
        ("created_at < %s", query.created_to),
    ):
        if given is not None:
            where.append(column)
            params.append(given)
    if query.after is not None:
        where.append("(created_at, id) < (%s, %s)")
        params += [query.after.created_at, query.after.id]
    return where, params


def _status_condition(status: str) -> tuple[str, object]:
    """``status`` matches the phase, the outcome or the HTTP status: phases, outcomes and
    numbers never share a spelling, so one column answers, and its index can serve."""
    if status in get_args(Phase):
        return "phase", status
    if re.fullmatch(r"-?[1-9]\d{0,8}|0", status):
        return "status", int(status)
    return "outcome", status


async def summaries(pool: Pool, execution_ids: Collection[str]) -> dict[str, JsonObject]:
    """The list entries of these executions, by id; those deleted since are absent."""
    if not execution_ids:
        return {}
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_LIST_COLUMNS} FROM executions WHERE id = ANY(%s)".encode(),
            (list(execution_ids),),
        )
        return {row["id"]: _execution_out(row, detail=False) for row in await cur.fetchall()}


async def delete_execution(pool: Pool, execution_id: str) -> bool:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM executions WHERE id = %s RETURNING id, task_id", (execution_id,)
        )
        deleted = list(await cur.fetchall())
        await record_deleted(conn, deleted)
        return len(deleted) == 1


async def clear_executions(pool: Pool) -> int:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM executions WHERE phase = 'finished' RETURNING id, task_id"
        )
        deleted = list(await cur.fetchall())
        await record_deleted(conn, deleted)
        return len(deleted)


async def finished_ids(pool: Pool) -> list[str]:
    """What :func:`clear_executions` is about to delete."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM executions WHERE phase = 'finished'")
        return [row["id"] for row in await cur.fetchall()]


async def stale_queued(pool: Pool, *, older_than_s: float, younger_than_s: float) -> list[DictRow]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, task_snapshot, variables, source FROM executions"
            " WHERE phase = 'queued'"
            " AND created_at < now() - make_interval(secs => %s)"
            " AND created_at > now() - make_interval(secs => %s)",
            (older_than_s, younger_than_s),
        )
        return list(await cur.fetchall())


# --- retention ----------------------------------------------------------------------------


async def ids_extending(conn: Connection, ids: Collection[str]) -> list[str]:
    """Executions whose ids extend one of ``ids`` (run ids may contain "_")."""
    cur = await conn.execute(
        "SELECT e.id FROM executions e JOIN unnest(%s::text[]) AS d(id)"
        " ON starts_with(e.id, d.id || '_')",
        (list(ids),),
    )
    return [row["id"] for row in await cur.fetchall()]


async def delete_finished_older_than(
    conn: Connection, seconds: float
) -> tuple[datetime, list[DictRow]]:
    """Delete the executions that finished and were created more than ``seconds`` ago (by
    the database's clock); returns that cutoff and their ``id`` and ``task_id``."""
    cur = await conn.execute("SELECT now() - make_interval(secs => %s) AS cutoff", (seconds,))
    row = await cur.fetchone()
    assert row is not None
    cutoff: datetime = row["cutoff"]
    cur = await conn.execute(
        "DELETE FROM executions WHERE phase = 'finished' AND created_at < %s RETURNING id, task_id",
        (cutoff,),
    )
    return cutoff, list(await cur.fetchall())


# --- run events ----------------------------------------------------------------------------


async def mark_running(conn: Connection, event: StartedEvent) -> None:
    """The execution is running ``event``'s attempt, unless it finished meanwhile."""
    await conn.execute(
        "UPDATE executions SET phase = 'running',"
        " started_at = COALESCE(started_at, to_timestamp(%s / 1000.0)),"
        " attempts = GREATEST(attempts, %s)"
        " WHERE id = %s AND phase <> 'finished'",
        (event.at, event.attempt, event.execution_id),
    )


async def finish(
    conn: Connection, event: ResultEvent, stored_result: JsonMapping
) -> AsyncCursor[DictRow]:
    """Finish the execution with ``event`` and ``stored_result`` (its result or a preview),
    unless it finished already. The cursor returns one row, its :data:`OUTCOME_COLUMNS`
    and ``source``, when this finished it; in a pipeline, reading it waits for the server.
    """
    return await conn.execute(
        "UPDATE executions SET phase = 'finished', outcome = %s, status = %s,"
        " result = %s, finished_at = to_timestamp(%s / 1000.0), duration_ms = %s,"
        " attempts = GREATEST(attempts, %s)"
        " WHERE id = %s AND phase <> 'finished'"
        f" RETURNING {OUTCOME_COLUMNS}, source",
        (
            event.result.outcome,
            STATUS_BY_OUTCOME.get(event.result.outcome, 500),
            Jsonb(stored_result),
            event.at,
            event.duration_ms,
            event.attempt,
            event.execution_id,
        ),
    )
