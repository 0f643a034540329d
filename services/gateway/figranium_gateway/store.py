"""All SQL of the gateway, raw and parameterised, one function per query."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from figranium_common import queue
from figranium_common.db import Connection, Pool
from figranium_common.models import RunResult, StartedEvent, epoch_ms
from figranium_gateway import changes, schedule_store

__all__ = ["Pool"]


# --- settings -------------------------------------------------------------------------


async def get_setting(pool: Pool, key: str) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))
        row = await cur.fetchone()
        return None if row is None else row["value"]


async def setting_insert_if_absent(pool: Pool, key: str, value: Any) -> tuple[Any, bool]:
    """Store ``value`` unless the key exists; returns the stored value and whether it was ours."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO settings (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO NOTHING RETURNING value",
            (key, Jsonb(value)),
        )
        row = await cur.fetchone()
        if row is not None:
            return row["value"], True
        cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))
        row = await cur.fetchone()
        assert row is not None
        return row["value"], False


# --- executions -----------------------------------------------------------------------

_EXECUTION_LIST_COLUMNS = (
    "id, task_id, task_name, mode, source, url, method, path, phase, status, outcome,"
    " created_at, started_at, finished_at, duration_ms, attempts"
)


def _execution_out(row: dict[str, Any], *, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
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


# What a synchronous run answers, once finished; ``result`` only then (a small row before).
# The whole result: the one kept apart when the execution's own is a preview.
_FULL_RESULT = (
    "COALESCE((SELECT r.result FROM execution_results r"
    " WHERE r.execution_id = executions.id), executions.result)"
)
_OUTCOME_COLUMNS = (
    f"id, phase, outcome, status, CASE WHEN phase = 'finished' THEN {_FULL_RESULT} END AS result"
)


@dataclass(frozen=True)
class Recorded:
    """A result stored. ``outcome``, as :func:`run_outcome` reads it, when it finished the
    execution; None when something else had finished it (a stop while it was queued)."""

    outcome: dict[str, Any] | None


async def run_outcome(pool: Pool, execution_id: str) -> dict[str, Any] | None:
    """What a synchronous run answers: ``id``, ``phase``, ``outcome``, ``status`` and, once
    finished, ``result``; None when there is no such execution."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_OUTCOME_COLUMNS} FROM executions WHERE id = %s", (execution_id,)
        )
        row = await cur.fetchone()
    return None if row is None else dict(row)


async def get_execution(pool: Pool, execution_id: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_EXECUTION_LIST_COLUMNS}, task_snapshot, variables, result"
            " FROM executions WHERE id = %s",
            (execution_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        out = _execution_out(row, detail=True)
        cur = await conn.execute(
            "SELECT payload->>'line' AS line FROM execution_events"
            " WHERE execution_id = %s AND type = 'log' ORDER BY attempt, seq",
            (execution_id,),
        )
        out["logs"] = [r["line"] for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT e.webhook_url, d.state, d.attempts, d.next_attempt_at, d.last_status,"
            " d.last_error, d.delivered_at"
            " FROM executions e LEFT JOIN webhook_deliveries d ON d.execution_id = e.id"
            " WHERE e.id = %s",
            (execution_id,),
        )
        hook = await cur.fetchone()
        if hook is not None and hook["webhook_url"] is not None:
            out["webhook"] = _webhook_out(hook)
        return out


def _webhook_out(row: dict[str, Any]) -> dict[str, Any]:
    """The delivery's state; before the run finishes there is no job yet: pending, no time."""
    state = row["state"] or "pending"
    return {
        "state": state,
        "attempts": row["attempts"] or 0,
        "lastStatus": row["last_status"],
        "lastError": row["last_error"],
        "deliveredAt": epoch_ms(row["delivered_at"]),
        "nextAttemptAt": epoch_ms(row["next_attempt_at"]) if state == "pending" else None,
    }


async def list_executions(pool: Pool, *, limit: int, status: str | None) -> list[dict[str, Any]]:
    query = f"SELECT {_EXECUTION_LIST_COLUMNS} FROM executions"
    params: list[Any] = []
    if status:
        query += " WHERE phase = %s OR outcome = %s OR status::text = %s"
        params += [status, status, status]
    query += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(limit)
    async with pool.connection() as conn:
        cur = await conn.execute(query.encode(), params)
        return [_execution_out(row, detail=False) for row in await cur.fetchall()]


async def delete_execution(pool: Pool, execution_id: str) -> bool:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM executions WHERE id = %s RETURNING id, task_id", (execution_id,)
        )
        deleted = list(await cur.fetchall())
        await changes.record_deleted(conn, deleted)
        return len(deleted) == 1


async def clear_executions(pool: Pool) -> int:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM executions WHERE phase = 'finished' RETURNING id, task_id"
        )
        deleted = list(await cur.fetchall())
        await changes.record_deleted(conn, deleted)
        return len(deleted)


async def stale_queued(
    pool: Pool, *, older_than_s: float, younger_than_s: float
) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, task_snapshot, variables, source FROM executions"
            " WHERE phase = 'queued'"
            " AND created_at < now() - make_interval(secs => %s)"
            " AND created_at > now() - make_interval(secs => %s)",
            (older_than_s, younger_than_s),
        )
        return list(await cur.fetchall())


# --- run events (the ingester) --------------------------------------------------------


@contextlib.asynccontextmanager
async def _pipelined(pool: Pool) -> AsyncIterator[Any]:
    """A transaction in pipeline mode: statements go out without waiting for each other,
    and the server is waited for only where a result is read and at the commit. An error
    surfaces at the next read or the commit and rolls the transaction back."""
    async with pool.connection() as conn, conn.pipeline(), conn.transaction():
        yield conn


T = TypeVar("T")


class _AlreadyStored(Exception):
    """A row a transaction took to be new was there already (a redelivered event, a taken
    execution id): the transaction is rolled back."""


class _Expected:
    """The events' transactions are written for the usual case, every event new: they send
    all their statements at once, and their reads come last, in one round trip with the
    commit. What they took for new is checked then; an event that had been stored already
    (a redelivery) rolls the transaction back, and it is done again step by step, reading
    as it goes, as the redelivered event needs."""

    def __init__(self) -> None:
        self._checks: list[tuple[Any, int]] = []

    def rows(self, cursor: Any, count: int) -> None:
        """``cursor`` must return ``count`` rows."""
        self._checks.append((cursor, count))

    async def verify(self) -> None:
        for cursor, count in self._checks:
            if len(await cursor.fetchall()) != count:
                raise _AlreadyStored


async def _inserted(cursor: Any, expected: _Expected | None) -> bool:
    """Whether an insert's one row came back: read here, or, with ``expected``, taken for
    granted and checked before the commit."""
    if expected is not None:
        expected.rows(cursor, 1)
        return True
    return await cursor.fetchone() is not None


async def _at_once(pool: Pool, work: Callable[[Any, _Expected | None], Awaitable[T]]) -> T:
    """``work(conn, expected)`` in one pipelined transaction taking every event to be new,
    checked before the commit; if one was not, ``work(conn, None)`` again in another,
    step by step."""
    try:
        async with _pipelined(pool) as conn:
            expected = _Expected()
            done = await work(conn, expected)
            await expected.verify()
            return done
    except _AlreadyStored:
        async with _pipelined(pool) as conn:
            return await work(conn, None)


STATUS_BY_OUTCOME = {"success": 200, "stopped": 200, "error": 422, "anti_bot": 422, "crashed": 500}


async def record_started(pool: Pool, event: StartedEvent) -> bool:
    """Store a started event and the lines that came with it; returns False when it was
    already stored (a redelivery)."""
    return await _at_once(pool, lambda conn, expected: _record_started(conn, event, expected))


async def _record_started(
    conn: Any, event: StartedEvent, expected: _Expected | None = None
) -> bool:
    """With ``expected``, the event is taken to be new and that is checked later; without,
    it is read here whether it was."""
    execution_id, attempt = event.execution_id, event.attempt
    inserted = await _insert_event(conn, execution_id, attempt, event.seq, "started", event.bare())
    if not await _inserted(inserted, expected):
        return False
    await conn.execute(
        "UPDATE executions SET phase = 'running',"
        " started_at = COALESCE(started_at, to_timestamp(%s / 1000.0)),"
        " attempts = GREATEST(attempts, %s)"
        " WHERE id = %s AND phase <> 'finished'",
        (event.at, attempt, execution_id),
    )
    await changes.record_change(conn, execution_id, "started", {"attempt": attempt})
    if lines := event.log_lines():
        await _insert_lines(conn, lines, expected)
    return True


async def record_logs(pool: Pool, lines: list[dict[str, Any]]) -> int:
    """Store log lines (payloads of :meth:`LogEvent.each`) in one transaction.

    Redelivered lines and lines of executions deleted meanwhile are skipped; returns how
    many were new.
    """
    if not lines:
        return 0
    return await _at_once(pool, lambda conn, expected: _insert_lines(conn, lines, expected))


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


async def _insert_lines(
    conn: Any, lines: list[dict[str, Any]], expected: _Expected | None = None
) -> int:
    """Insert the lines and log a change for each new one; how many were new. With
    ``expected``, all of them are taken to be new, and that is checked later."""
    keys = [(line["execution_id"], int(line["attempt"]), int(line["seq"])) for line in lines]
    ids = [key[0] for key in keys]
    cur = await conn.execute(
        INSERT_LINES,
        # The lines as one JSON array: cheaper to send than a jsonb[] (see changelog).
        (ids, [key[1] for key in keys], [key[2] for key in keys], Jsonb(lines), ids),
    )
    if expected is not None:
        expected.rows(cur, len(lines))  # a batch holding a line twice is done step by step
        stored = set(keys)
    else:
        stored = {(row["execution_id"], row["attempt"], row["seq"]) for row in await cur.fetchall()}
    new = len(stored)
    logged = []
    for key, line in zip(keys, lines, strict=True):
        if key in stored:  # once, also when the batch holds the line twice
            stored.remove(key)
            logged.append((key[0], changes.log_extra(line, key[1], key[2])))
    await changes.record_each(conn, "log", logged)
    return new


async def record_result(
    pool: Pool,
    execution_id: str,
    attempt: int,
    seq: int,
    result: RunResult,
    duration_ms: int,
    finished_at_ms: int,
    payload: dict[str, Any],
    storage_state: str | None = None,
    lines: list[dict[str, Any]] | None = None,
    started: StartedEvent | None = None,
    preview_bytes: int | None = None,
) -> Recorded | None:
    """Finish an execution with its first result; later results change nothing (None).

    A result larger than ``preview_bytes`` (RESULT_PREVIEW_BYTES) is kept whole in
    ``execution_results``, and the execution's own is a preview (:func:`result_preview`).

    ``started`` (a start the result stands for) and then ``lines`` (payloads of
    :meth:`ResultEvent.log_lines`) are stored first, in the same transaction, as
    :func:`record_started` and :func:`record_logs` would.

    Times come from the runner's events, so ``startedAt`` and ``finishedAt`` share a clock.
    A ``storage_state`` becomes the task's saved browser state in the same transaction, so
    a redelivered result can neither lose it nor apply it twice; so does a scheduled run's
    outcome in its schedule's ``lastRun*`` fields.
    """
    whole = result.model_dump(mode="json", exclude_none=True)
    preview = None if preview_bytes is None else result_preview(whole, preview_bytes)
    result_row = Jsonb(whole if preview is None else preview)
    if preview is not None and "result" in payload:
        payload = {**payload, "result": preview}  # the event history need not hold it twice

    async def store_result(conn: Any, expected: _Expected | None) -> Recorded | None:
        if started is not None:
            await _record_started(conn, started, expected)
        if lines:
            await _insert_lines(conn, lines, expected)
        inserted = await _insert_event(conn, execution_id, attempt, seq, "result", payload)
        if not await _inserted(inserted, expected):
            return None
        if storage_state is not None:
            await _save_browser_state(conn, execution_id, storage_state)
        if preview is not None:
            await conn.execute(
                "INSERT INTO execution_results (execution_id, result)"
                " SELECT id, %s FROM executions WHERE id = %s AND phase <> 'finished'"
                " ON CONFLICT (execution_id) DO NOTHING",
                (Jsonb(whole), execution_id),
            )
        finishing = await conn.execute(
            "UPDATE executions SET phase = 'finished', outcome = %s, status = %s,"
            " result = %s, finished_at = to_timestamp(%s / 1000.0), duration_ms = %s,"
            " attempts = GREATEST(attempts, %s)"
            " WHERE id = %s AND phase <> 'finished'"
            f" RETURNING {_OUTCOME_COLUMNS}, source",
            (
                result.outcome,
                STATUS_BY_OUTCOME.get(result.outcome, 500),
                result_row,
                finished_at_ms,
                duration_ms,
                attempt,
                execution_id,
            ),
        )
        await _queue_webhook(conn, execution_id)
        await changes.record_change(conn, execution_id, "finished", {"attempt": attempt})
        row = await finishing.fetchone()  # the one wait for the server before the commit
        # Only a scheduled run has a schedule to tell (and an execution something else
        # finished may be one).
        if row is None or row.pop("source") == "scheduler":
            await schedule_store.record_scheduled_result(conn, execution_id)
        return Recorded(None if row is None else dict(row))

    return await _at_once(pool, store_result)


async def _queue_webhook(conn: Any, execution_id: str) -> None:
    # With the result, in its transaction: a stored result always has its delivery job, and
    # the unique execution_id keeps a later or redelivered result from queuing a second.
    # The payload is read from the row as stored, so it says what GET /api/executions says.
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, execution_id, url, payload)"
        " SELECT %s, e.id, e.webhook_url, jsonb_build_object("
        "'executionId', e.id, 'taskId', e.task_id, 'status', e.status, 'outcome', e.outcome,"
        " 'durationMs', e.duration_ms, 'result', COALESCE((SELECT r.result"
        " FROM execution_results r WHERE r.execution_id = e.id), e.result))"
        " FROM executions e"
        " WHERE e.id = %s AND e.phase = 'finished' AND e.webhook_url IS NOT NULL"
        " ON CONFLICT (execution_id) DO NOTHING",
        (new_delivery_id(), execution_id),
    )


def new_delivery_id() -> str:
    return f"whd_{secrets.token_hex(12)}"


async def _save_browser_state(conn: Any, execution_id: str, state: str) -> None:
    # Keyed by the execution's task; ad-hoc runs and runs of since-deleted tasks keep nothing.
    await conn.execute(
        "INSERT INTO task_browser_state (task_id, state)"
        " SELECT e.task_id, %s FROM executions e"
        " WHERE e.id = %s AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.task_id)"
        " ON CONFLICT (task_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        (Jsonb(state), execution_id),
    )


# What a preview keeps of each log line, and of the run's error.
_PREVIEW_LINES = 20
_PREVIEW_CHARS = 2048


def result_preview(result: dict[str, Any], limit: int) -> dict[str, Any] | None:
    """None when ``result`` (as stored) is at most ``limit`` bytes of JSON; else what the
    execution keeps of it: its outcome, URLs, error and first log lines, with
    ``hasFullResult`` (as Figranium's bounded execution history)."""
    if len(json.dumps(result, separators=(",", ":")).encode()) <= limit:
        return None
    preview: dict[str, Any] = {
        key: result[key] for key in ("outcome", "final_url", "screenshot_url") if key in result
    }
    if isinstance(result.get("error"), str):
        preview["error"] = result["error"][:_PREVIEW_CHARS]
    if isinstance(result.get("logs"), list):
        preview["logs"] = [str(line)[:_PREVIEW_CHARS] for line in result["logs"][:_PREVIEW_LINES]]
    preview.update(truncated=True, hasFullResult=True)
    if len(json.dumps(preview).encode()) > limit:
        preview = {"outcome": result.get("outcome"), "truncated": True, "hasFullResult": True}
    return preview


async def full_result(pool: Pool, execution_id: str) -> tuple[bool, dict[str, Any] | None]:
    """Whether the execution exists, and its whole result (None until it finished)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT phase, {_FULL_RESULT} AS result FROM executions WHERE id = %s",
            (execution_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return False, None
    return True, row["result"] if row["phase"] == "finished" else None


async def has_event(pool: Pool, execution_id: str, attempt: int, seq: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM execution_events WHERE execution_id = %s AND attempt = %s AND seq = %s",
            (execution_id, attempt, seq),
        )
        return await cur.fetchone() is not None


async def _insert_event(
    conn: Any, execution_id: str, attempt: int, seq: int, kind: str, payload: dict[str, Any]
) -> Any:
    """The insert's cursor: one row if the event is new. In a pipeline, reading it waits
    for the server."""
    # Inserting through SELECT skips events of executions deleted meanwhile; ON CONFLICT
    # covers both a redelivered event and a second result for the same execution.
    return await conn.execute(
        "INSERT INTO execution_events (execution_id, attempt, seq, type, payload)"
        " SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM executions WHERE id = %s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (execution_id, attempt, seq, kind, Jsonb(payload), execution_id),
    )
