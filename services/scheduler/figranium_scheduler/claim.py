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

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg.rows import DictRow
from pydantic import ValidationError

from figranium_common import queue
from figranium_common.changelog import record_changes
from figranium_common.db import Connection, Pool
from figranium_common.models import RunRequest
from figranium_common.schedules import Decision, Timing, decide
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


async def claim_due(
    pool: Pool,
    box: SecretBox,
    *,
    limit: int,
    grace: timedelta,
    timeout_seconds: float,
    headful_available: bool,
) -> Claimed:
    """Claim up to ``limit`` due schedules and queue their executions, in one transaction.

    Headful tasks are skipped (reason ``no_headful_runner``) unless ``headful_available``:
    queued, they would wait for a runner that may never come; so are tasks that do not
    validate (``invalid_task``: saved by an older release). Skipped or not, every claimed
    schedule's ``next_run`` moves on.

    Set-based: whatever the batch size, the claim is a fixed handful of statements (lock
    the rows, move every ``next_run`` on, check overlaps, insert the executions, read the
    saved browser states, log the changes), so 2,000 schedules due at once are queued in
    a few batches rather than thousands of round trips.
    """
    claimed = Claimed()
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_CLAIM, (limit,))
        rows = list(await cur.fetchall())
        claimed.rows = len(rows)
        if not rows:
            return claimed
        due: list[DictRow] = []
        advanced: list[tuple[str, datetime]] = []
        # One moment for the whole batch, so schedules alike (same timing, due time and
        # policy: typically thousands due the same minute) share one cron computation.
        now = max(row["now"] for row in rows)
        decisions: dict[tuple[Timing, datetime, str], Decision] = {}
        for row in rows:
            timing = Timing(row["cron"], row["interval_minutes"], row["timezone"])
            alike = (timing, row["next_run"], row["misfire_policy"])
            decision = decisions.get(alike)
            if decision is None:
                decision = decide(timing, row["next_run"], now, row["misfire_policy"], grace)
                decisions[alike] = decision
            advanced.append((row["task_id"], decision.next_run))
            if decision.fire:
                due.append(row)
            else:
                claimed.skipped.append((row["task_id"], "missed"))
        await _advance(conn, advanced)
        running = await _still_running(
            conn, [row["task_id"] for row in due if not row["allow_overlap"]]
        )
        new: list[queue.NewExecution] = []
        queued: list[DictRow] = []  # the row of each of ``new``
        for row in due:
            if row["task_id"] in running:
                claimed.skipped.append((row["task_id"], "overlap"))
                continue
            if row["body"].get("mode") == "headful" and not headful_available:
                claimed.skipped.append((row["task_id"], "no_headful_runner"))
                continue
            task = {**row["body"], "id": row["task_id"]}
            execution = queue.NewExecution(
                queue.new_execution_id(), task, SOURCE, webhook_url=row["webhook_url"]
            )
            try:
                _ = execution.run_task  # validated here, once, for its run request
            except ValidationError:  # saved by an older release, under rules made stricter
                claimed.skipped.append((row["task_id"], "invalid_task"))
                continue
            new.append(execution)
            queued.append(row)
        await queue.insert_executions(conn, new)
        states = await queue.load_browser_states(conn, box, [row["task_id"] for row in queued])
        for execution, row in zip(new, queued, strict=True):
            request = await queue.gather_run_request(
                conn, box, execution, timeout_seconds=timeout_seconds, browser_states=states
            )
            lateness_ms = int((row["now"] - row["next_run"]).total_seconds() * 1000)
            claimed.fired.append(Fired(row["task_id"], row["next_run"], lateness_ms, request))
        # Last, as changes.record_change asks: the lock is then held only until the commit.
        await record_changes(conn, [n.execution_id for n in new], "queued")
    return claimed


async def _advance(conn: Connection, advanced: list[tuple[str, datetime]]) -> None:
    task_ids = [task_id for task_id, _ in advanced]
    next_runs = [next_run for _, next_run in advanced]
    await conn.execute(
        "UPDATE schedules s SET next_run = a.next_run"
        " FROM unnest(%s::text[], %s::timestamptz[]) AS a (task_id, next_run)"
        " WHERE s.task_id = a.task_id",
        (task_ids, next_runs),
    )
    # The task's copy, for clients reading GET /api/tasks; not a change of the task itself.
    await conn.execute(
        "UPDATE tasks t SET body = jsonb_set(t.body, '{schedule,nextRun}', to_jsonb(a.ms))"
        " FROM unnest(%s::text[], %s::bigint[]) AS a (task_id, ms)"
        " WHERE t.id = a.task_id AND jsonb_typeof(t.body->'schedule') = 'object'",
        (task_ids, [int(next_run.timestamp() * 1000) for next_run in next_runs]),
    )


async def _still_running(conn: Connection, task_ids: list[str]) -> set[str]:
    """Which of these tasks have a scheduled execution that has not finished yet."""
    if not task_ids:
        return set()
    cur = await conn.execute(
        "SELECT DISTINCT task_id FROM executions"
        " WHERE task_id = ANY(%s) AND source = %s AND phase <> 'finished'",
        (task_ids, SOURCE),
    )
    return {row["task_id"] for row in await cur.fetchall()}


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
