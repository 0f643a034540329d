"""All SQL of the scheduler: claiming due schedules, queuing their executions, heartbeats.

Claiming is exactly-once across replicas: one transaction locks the due rows with
``FOR UPDATE SKIP LOCKED`` (another replica skips them, and re-checks ``next_run`` on the
committed version if it reached them after the commit), moves each ``next_run`` on, and
inserts the queued executions. The run requests are published after the commit; a crash
in between leaves queued executions that the gateway's sweeper publishes 20 to 240 s later.

The execution row and the run request are made by ``figranium_common.queue``, as the
gateway makes them; the change log by ``figranium_common.changelog``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from figranium_common import queue
from figranium_common.changelog import record_change
from figranium_common.db import Pool
from figranium_common.models import RunRequest
from figranium_common.schedules import Timing, decide
from figranium_common.secretbox import SecretBox

SOURCE = "scheduler"

_CLAIM = (
    "SELECT s.task_id, s.cron, s.interval_minutes, s.timezone, s.next_run, s.misfire_policy,"
    " s.allow_overlap, s.webhook_url, t.body, clock_timestamp() AS now"
    " FROM schedules s JOIN tasks t ON t.id = s.task_id"
    " WHERE s.enabled AND s.next_run <= now()"
    " ORDER BY s.next_run LIMIT %s"
    " FOR UPDATE OF s SKIP LOCKED"
)


@dataclass(frozen=True)
class Fired:
    task_id: str
    due: datetime
    lateness_ms: int
    request: RunRequest


@dataclass
class Claimed:
    """What one claim did: how many rows it took, which fired, which were skipped why."""

    rows: int = 0
    fired: list[Fired] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (task id, reason)


def new_execution_id() -> str:
    # The gateway's form (figranium_gateway.dispatch.new_execution_id).
    return f"exec_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


async def claim_due(
    pool: Pool, box: SecretBox, *, limit: int, grace: timedelta, timeout_seconds: float
) -> Claimed:
    """Claim up to ``limit`` due schedules and queue their executions, in one transaction."""
    claimed = Claimed()
    queued: list[str] = []
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_CLAIM, (limit,))
        rows = list(await cur.fetchall())
        claimed.rows = len(rows)
        for row in rows:
            task_id: str = row["task_id"]
            timing = Timing(row["cron"], row["interval_minutes"], row["timezone"])
            decision = decide(timing, row["next_run"], row["now"], row["misfire_policy"], grace)
            await _advance(conn, task_id, decision.next_run)
            if not decision.fire:
                claimed.skipped.append((task_id, "missed"))
                continue
            if not row["allow_overlap"] and await _still_running(conn, task_id):
                claimed.skipped.append((task_id, "overlap"))
                continue
            task = {**row["body"], "id": task_id}
            execution_id = new_execution_id()
            await queue.insert_execution(
                conn,
                execution_id=execution_id,
                task=task,
                variables={},
                source=SOURCE,
                webhook_url=row["webhook_url"],
            )
            queued.append(execution_id)
            request = await queue.gather_run_request(
                conn,
                box,
                execution_id=execution_id,
                task=task,
                variables={},
                source=SOURCE,
                timeout_seconds=timeout_seconds,
            )
            lateness = row["now"] - row["next_run"]
            claimed.fired.append(
                Fired(task_id, row["next_run"], int(lateness.total_seconds() * 1000), request)
            )
        # Last, as changes.record_change asks: the lock is then held only until the commit.
        for execution_id in queued:
            await record_change(conn, execution_id, "queued")
    return claimed


async def _advance(conn: Any, task_id: str, next_run: datetime) -> None:
    await conn.execute("UPDATE schedules SET next_run = %s WHERE task_id = %s", (next_run, task_id))
    # The task's copy, for clients reading GET /api/tasks; not a change of the task itself.
    await conn.execute(
        "UPDATE tasks SET body = jsonb_set(body, '{schedule,nextRun}', to_jsonb(%s::bigint))"
        " WHERE id = %s AND jsonb_typeof(body->'schedule') = 'object'",
        (int(next_run.timestamp() * 1000), task_id),
    )


async def _still_running(conn: Any, task_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM executions WHERE task_id = %s AND source = %s AND phase <> 'finished'"
        " LIMIT 1",
        (task_id, SOURCE),
    )
    return await cur.fetchone() is not None


# --- timing and liveness --------------------------------------------------------------


async def seconds_until_next(pool: Pool) -> float | None:
    """How long until the earliest enabled schedule is due (≤ 0: now); None: none is."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT EXTRACT(EPOCH FROM min(next_run) - clock_timestamp())::float8 AS s"
            " FROM schedules WHERE enabled"
        )
        row = await cur.fetchone()
        return None if row is None or row["s"] is None else float(row["s"])


async def heartbeat(pool: Pool, replica_id: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO scheduler_heartbeats (replica_id) VALUES (%s)"
            " ON CONFLICT (replica_id) DO UPDATE SET last_seen = now()",
            (replica_id,),
        )
        # Replicas that died without saying goodbye; long gone, not just late.
        await conn.execute(
            "DELETE FROM scheduler_heartbeats WHERE last_seen < now() - interval '1 hour'"
        )


async def goodbye(pool: Pool, replica_id: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM scheduler_heartbeats WHERE replica_id = %s", (replica_id,))
