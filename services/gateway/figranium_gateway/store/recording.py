"""Storing run events (the ingester's writes): each event in one transaction across the
tables it touches, composed from their modules' statements on one connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from figranium_common.changelog import record_change, record_each
from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import LogLine, ResultEvent, RunResult, StartedEvent
from figranium_gateway.changes import log_extra
from figranium_gateway.store import (
    captures,
    events,
    executions,
    results,
    schedules,
    tasks,
    webhooks,
)

T = TypeVar("T")


@contextlib.asynccontextmanager
async def _pipelined(pool: Pool) -> AsyncIterator[Connection]:
    """A transaction in pipeline mode: statements go out without waiting for each other,
    and the server is waited for only where a result is read and at the commit. An error
    surfaces at the next read or the commit and rolls the transaction back."""
    async with pool.connection() as conn, conn.pipeline(), conn.transaction():
        yield conn


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
        self._checks: list[tuple[AsyncCursor[DictRow], int]] = []

    def rows(self, cursor: AsyncCursor[DictRow], count: int) -> None:
        """``cursor`` must return ``count`` rows."""
        self._checks.append((cursor, count))

    async def verify(self) -> None:
        for cursor, count in self._checks:
            if len(await cursor.fetchall()) != count:
                raise _AlreadyStored


async def _inserted(cursor: AsyncCursor[DictRow], expected: _Expected | None) -> bool:
    """Whether an insert's one row came back: read here, or, with ``expected``, taken for
    granted and checked before the commit."""
    if expected is not None:
        expected.rows(cursor, 1)
        return True
    return await cursor.fetchone() is not None


async def _at_once(pool: Pool, work: Callable[[Connection, _Expected | None], Awaitable[T]]) -> T:
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


async def record_started(pool: Pool, event: StartedEvent) -> bool:
    """Store a started event and the lines that came with it; returns False when it was
    already stored (a redelivery)."""
    return await _at_once(pool, lambda conn, expected: _record_started(conn, event, expected))


async def _record_started(
    conn: Connection, event: StartedEvent, expected: _Expected | None = None
) -> bool:
    """With ``expected``, the event is taken to be new and that is checked later; without,
    it is read here whether it was."""
    key = (event.execution_id, event.attempt, event.seq)
    if not await _inserted(await events.insert_event(conn, key, "started", event.bare()), expected):
        return False
    await executions.mark_running(conn, event)
    await record_change(conn, event.execution_id, "started", {"attempt": event.attempt})
    if lines := event.log_lines():
        await _insert_lines(conn, lines, expected)
    return True


async def record_logs(pool: Pool, lines: list[LogLine]) -> int:
    """Store log lines (payloads of :meth:`LogEvent.each`) in one transaction.

    Redelivered lines and lines of executions deleted meanwhile are skipped; returns how
    many were new.
    """
    if not lines:
        return 0
    return await _at_once(pool, lambda conn, expected: _insert_lines(conn, lines, expected))


async def _insert_lines(
    conn: Connection, lines: list[LogLine], expected: _Expected | None = None
) -> int:
    """Insert the lines and log a change for each new one; how many were new. With
    ``expected``, all of them are taken to be new, and that is checked later."""
    keys = [(line["execution_id"], int(line["attempt"]), int(line["seq"])) for line in lines]
    cur = await events.insert_lines(conn, keys, lines)
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
            logged.append((key[0], log_extra(line, key[1], key[2])))
    await record_each(conn, "log", logged)
    return new


@dataclass(frozen=True)
class Recorded:
    """A result stored. ``outcome``, as ``executions.run_outcome`` reads it, when it
    finished the execution; None when something else had finished it (a stop while it
    was queued)."""

    outcome: executions.RunOutcome | None


def gateway_result(
    execution_id: str, result: RunResult, *, duration_ms: int, at: int
) -> ResultEvent:
    """A result the gateway gives an execution itself (a stop before it started, a crash):
    attempt 0 and sequence 0, which no runner's event has, so it never takes the key of
    one. Built without validation, which asks a runner's attempts to start at 1."""
    return ResultEvent.model_construct(
        execution_id=execution_id, attempt=0, seq=0, at=at, result=result, duration_ms=duration_ms
    )


async def record_result(
    pool: Pool,
    event: ResultEvent,
    payload: JsonObject,
    *,
    storage_state: str | None = None,
    preview_bytes: int | None = None,
) -> Recorded | None:
    """Finish an execution with its first result; later results change nothing (None).

    ``payload`` is the event as its history keeps it. A result larger than
    ``preview_bytes`` (RESULT_PREVIEW_BYTES) is kept whole in ``execution_results``, and
    the execution's own is a preview (:func:`results.result_preview`).

    The start the result stands for (``event.started``) and then its lines are stored
    first, in the same transaction, as :func:`record_started` and :func:`record_logs`
    would.

    Times come from the runner's events, so ``startedAt`` and ``finishedAt`` share a clock.
    A ``storage_state`` becomes the task's saved browser state in the same transaction, so
    a redelivered result can neither lose it nor apply it twice; so does a scheduled run's
    outcome in its schedule's ``lastRun*`` fields. The captures the run stored
    (``event.stored_captures``) are indexed with it.
    """
    execution_id = event.execution_id
    whole = event.result.model_dump(mode="json", exclude_none=True)
    preview = None if preview_bytes is None else results.result_preview(whole, preview_bytes)
    if preview is not None and "result" in payload:
        payload = {**payload, "result": preview}  # the event history need not hold it twice
    lines = event.log_lines()

    async def store_result(conn: Connection, expected: _Expected | None) -> Recorded | None:
        if event.started is not None:
            await _record_started(conn, event.started, expected)
        if lines:
            await _insert_lines(conn, lines, expected)
        key = (execution_id, event.attempt, event.seq)
        if not await _inserted(await events.insert_event(conn, key, "result", payload), expected):
            return None
        if event.stored_captures:
            stored = [captures.Indexed(execution_id, c) for c in event.stored_captures]
            await captures.insert_rows(conn, stored)
        if storage_state is not None:
            await tasks.save_browser_state(conn, execution_id, storage_state)
        if preview is not None:
            await results.keep_whole(conn, execution_id, whole)
        finishing = await executions.finish(conn, event, whole if preview is None else preview)
        await webhooks.queue_delivery(conn, execution_id)
        await record_change(conn, execution_id, "finished", {"attempt": event.attempt})
        row = await finishing.fetchone()  # the one wait for the server before the commit
        # Only a scheduled run has a schedule to tell (and an execution something else
        # finished may be one).
        if row is None or row.pop("source") == "scheduler":
            await schedules.record_scheduled_result(conn, execution_id)
        return Recorded(None if row is None else executions.outcome_of(row))

    return await _at_once(pool, store_result)
