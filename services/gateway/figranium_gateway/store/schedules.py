"""SQL for ``schedules`` (the scheduler's table) and ``scheduler_heartbeats``.

A schedule is also the task JSON's ``schedule`` field; both are written in one
transaction so the scheduler (which reads the table) and clients (which read the task)
never disagree about a schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, TypedDict

from psycopg.rows import DictRow

from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import epoch_ms
from figranium_common.schedules import Timing
from figranium_gateway.store import tasks

_COLUMNS = (
    "s.task_id, s.cron, s.interval_minutes, s.timezone, s.next_run, s.enabled,"
    " s.last_run, s.last_run_status, s.last_run_duration_ms, t.body"
)
_FROM = "FROM schedules s JOIN tasks t ON t.id = s.task_id"


class FoundSchedule(TypedDict):
    row: DictRow  # the row of ``schedules`` (_COLUMNS)
    schedule: JsonObject  # as the task shows it


class Planned(NamedTuple):
    """What to store: the schedule object, its timing and its next run (None: disabled)."""

    stored: JsonObject
    timing: Timing
    next_run: datetime | None


# Plans the new schedule from the stored one (None when the task has none yet).
Plan = Callable[[JsonObject | None], Planned]


class Overview(TypedDict):
    replicas: int  # scheduler replicas alive
    rows: list[DictRow]  # the enabled schedules' task_id, cron, interval_minutes, next_run


def _last_run(row: DictRow) -> JsonObject:
    """The schedule's ``lastRun*`` fields from its row."""
    return {
        "lastRun": epoch_ms(row["last_run"]),
        "lastRunStatus": row["last_run_status"],
        "lastRunDurationMs": row["last_run_duration_ms"],
    }


def _schedule_out(row: DictRow) -> JsonObject:
    """The task's stored schedule with the table's live fields (next and last run)."""
    stored = row["body"].get("schedule")
    schedule: JsonObject = dict(stored) if isinstance(stored, dict) else {}
    schedule["nextRun"] = epoch_ms(row["next_run"]) if row["enabled"] else None
    schedule.update(_last_run(row))
    return schedule


async def list_schedules(
    pool: Pool, *, after: str | None = None, limit: int | None = None
) -> list[JsonObject]:
    """The schedules by task id: all of them, or (the console's pages) at most ``limit``
    of those whose task id sorts after ``after``: a keyset page on the primary key."""
    where = "" if after is None else " WHERE s.task_id > %s"
    params = ([] if after is None else [after]) + [limit]
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} {_FROM}{where} ORDER BY s.task_id LIMIT %s", params
        )
        return [
            {
                "taskId": row["task_id"],
                "taskName": row["body"].get("name") or row["task_id"],
                "mode": row["body"].get("mode", "agent"),
                "schedule": _schedule_out(row),
            }
            for row in await cur.fetchall()
        ]


async def count_schedules(pool: Pool, up_to: str | None) -> tuple[int, int]:
    """How many schedules there are, and how many of them sort at or before task id
    ``up_to`` (those on earlier pages)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS total, count(*) FILTER (WHERE task_id <= %s) AS before"
            " FROM schedules",
            (up_to,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["total"]), int(row["before"])


async def get_schedule(pool: Pool, task_id: str) -> FoundSchedule | None:
    """The schedule and its timing columns; None when the task has no schedule."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE s.task_id = %s", (task_id,))
        row = await cur.fetchone()
    return None if row is None else {"row": dict(row), "schedule": _schedule_out(row)}


async def save_schedule(pool: Pool, task_id: str, plan: Plan) -> JsonObject | None:
    """Write the schedule ``plan`` makes of the stored one, to the table and to the task,
    with the task locked so that concurrent changes merge one after the other; None when
    there is no such task. What ``plan`` raises leaves everything as it was."""
    async with pool.connection() as conn, conn.transaction():
        body = await tasks.locked_body(conn, task_id)
        if body is None:
            return None
        previous = body.get("schedule")
        return await write_planned(
            conn, task_id, plan(dict(previous) if isinstance(previous, dict) else None)
        )


async def write_planned(conn: Connection, task_id: str, planned: Planned) -> JsonObject:
    """Write a planned schedule to the table and to the (existing, locked) task; in the
    caller's transaction. Returns the schedule as the task now shows it."""
    stored, timing, next_run = planned
    schedule = {**stored, "nextRun": epoch_ms(next_run)}
    # Results of earlier runs stay: a new timing does not erase the task's history.
    cur = await conn.execute(
        "INSERT INTO schedules (task_id, cron, interval_minutes, timezone, next_run,"
        " enabled, misfire_policy, allow_overlap, webhook_url)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (task_id) DO UPDATE SET cron = EXCLUDED.cron,"
        " interval_minutes = EXCLUDED.interval_minutes, timezone = EXCLUDED.timezone,"
        " next_run = EXCLUDED.next_run, enabled = EXCLUDED.enabled,"
        " misfire_policy = EXCLUDED.misfire_policy, allow_overlap = EXCLUDED.allow_overlap,"
        " webhook_url = EXCLUDED.webhook_url, updated_at = now()"
        " RETURNING last_run, last_run_status, last_run_duration_ms",
        (
            task_id,
            timing.cron,
            timing.interval_minutes,
            timing.timezone,
            next_run,
            bool(stored.get("enabled")),
            stored.get("misfirePolicy", "run_once"),
            bool(stored.get("allowOverlap")),
            stored.get("webhookUrl"),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    schedule.update(_last_run(row))
    await tasks.set_schedule(conn, task_id, schedule)
    return schedule


async def delete_schedule(pool: Pool, task_id: str) -> bool:
    """Forget the schedule (the scheduler has nothing left to claim); False: no such task."""
    async with pool.connection() as conn, conn.transaction():
        return await remove_schedule(conn, task_id)


async def remove_schedule(conn: Connection, task_id: str) -> bool:
    """Forget the schedule in the caller's transaction; False: no such task."""
    if not await tasks.set_schedule(conn, task_id, None):
        return False
    await conn.execute("DELETE FROM schedules WHERE task_id = %s", (task_id,))
    return True


async def scheduled_overview(pool: Pool, alive_within_s: float) -> Overview:
    """Live scheduler replicas (by heartbeat) and every enabled schedule's next run."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM scheduler_heartbeats"
            " WHERE last_seen > now() - make_interval(secs => %s)",
            (alive_within_s,),
        )
        alive = await cur.fetchone()
        cur = await conn.execute(
            "SELECT task_id, cron, interval_minutes, next_run FROM schedules"
            " WHERE enabled ORDER BY next_run, task_id"
        )
        rows = list(await cur.fetchall())
    return {"replicas": 0 if alive is None else int(alive["n"]), "rows": rows}


async def record_scheduled_result(conn: Connection, execution_id: str) -> bool:
    """Copy a finished scheduled execution into its schedule's ``lastRun*`` fields.

    Called in the transaction that stored the result, after it; a result of an execution
    that the scheduler did not start, or of a task whose schedule was deleted since,
    changes nothing.
    """
    cur = await conn.execute(
        "UPDATE schedules s SET last_run = COALESCE(e.started_at, e.created_at),"
        " last_run_status = e.outcome, last_run_duration_ms = e.duration_ms"
        " FROM executions e"
        " WHERE e.id = %s AND e.source = 'scheduler' AND e.phase = 'finished'"
        " AND s.task_id = e.task_id"
        " AND (s.last_run IS NULL OR s.last_run <= COALESCE(e.started_at, e.created_at))"
        " RETURNING s.task_id, s.last_run, s.last_run_status, s.last_run_duration_ms",
        (execution_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return False
    await tasks.merge_schedule(conn, row["task_id"], _last_run(row))
    return True
