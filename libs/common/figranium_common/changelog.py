"""Writing the execution change log (``execution_changes``), for every service that changes
executions, and the ping that tells the gateways' change streams after the commit; the
gateway's ``changes`` module explains the ordering and reads the log.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.aio.client import Client as NATS
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common.db import Connection
from figranium_common.jsontypes import JsonMapping
from figranium_common.nats import CHANGES_NOTIFY_SUBJECT, ping

# Any constant distinct from the migration lock works; every writer must use the same.
CHANGES_LOCK_ID = 0x46_49_47_43  # "FIGC"


# --- writing (inside the caller's transaction) ----------------------------------------

# Every insert into the log takes the lock first, in the same statement: a row's id is
# drawn from the sequence as the row is formed, from rows joined with ``held``, so after
# the lock (which is held to the commit, so ids become visible in the order they were
# drawn). One statement instead of two: each is a round trip to the server.
_LOCKED = "WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(%s)) "


def row_payload(alias: str) -> str:
    """SQL for a change's payload as read from the executions row (or a ``RETURNING`` of
    it) named ``alias``: its id, task, phase and, once known, outcome, status and duration."""
    e = alias
    return (
        f"(jsonb_build_object('executionId', {e}.id, 'taskId', {e}.task_id, 'phase', {e}.phase)"
        f" || jsonb_strip_nulls(jsonb_build_object('outcome', {e}.outcome,"
        f" 'status', {e}.status, 'durationMs', {e}.duration_ms)))"
    )


def logged_insert(insert: str) -> str:
    """One statement: ``insert`` (an ``INSERT INTO executions`` without ``RETURNING``) and,
    for the row it inserts, if any, a change. Its parameters are the lock's and the
    change's kind, then the insert's; it returns the inserted row's id.

    The lock comes first in the parameters, not in the order of work: the change's id is
    drawn as its row is formed from the lock's row, so after the lock, as in
    :func:`record_each`; both are held to the statement's commit. One statement in
    autocommit needs no transaction block, pipeline or second round trip.
    """
    return (
        "WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(%s), %s::text AS kind),"
        f" inserted AS ({insert} RETURNING id, task_id, phase, outcome, status, duration_ms),"
        " logged AS (INSERT INTO execution_changes (execution_id, kind, payload)"
        f" SELECT i.id, held.kind, {row_payload('i')} FROM held CROSS JOIN inserted i)"
        " SELECT id FROM inserted"
    )


async def record_change(
    conn: Connection, execution_id: str, kind: str, extra: JsonMapping | None = None
) -> None:
    """Log a change of an existing execution; call last in the transaction that made it.

    The payload is read from the execution row as this transaction left it, so it shows
    the phase and outcome that were really stored (a late ``started`` after a result
    still says ``finished``).
    """
    await record_changes(conn, [execution_id], kind, extra)


async def record_changes(
    conn: Connection, execution_ids: list[str], kind: str, extra: JsonMapping | None = None
) -> None:
    """``record_change`` for many executions in one statement, logged in the given order."""
    await record_each(conn, kind, [(execution_id, extra or {}) for execution_id in execution_ids])


# A set-returning function is planned as 100 rows, so a join of its ids to executions
# was a scan of the whole table, for every event, until the table held some 50,000 rows.
# The ids again as ``= ANY``, an index condition, keep the lookup to the rows asked for.
RECORD_EACH = (
    _LOCKED + "INSERT INTO execution_changes (execution_id, kind, payload)"
    f" SELECT e.id, %s, {row_payload('e')} || wanted.extra"
    " FROM held CROSS JOIN ROWS FROM (unnest(%s::text[]), jsonb_array_elements(%s::jsonb))"
    "  WITH ORDINALITY AS wanted (id, extra, n)"
    " JOIN executions e ON e.id = wanted.id AND e.id = ANY(%s::text[])"
    " ORDER BY wanted.n"
)


async def record_each(
    conn: Connection, kind: str, changes: Sequence[tuple[str, JsonMapping]]
) -> None:
    """Log one change per (execution id, extra payload), in the given order."""
    if not changes:
        return
    ids = [change[0] for change in changes]
    # The extras as one JSON array, not a jsonb[]: an array's elements are quoted and
    # escaped one by one on the way out, which costs more than the statement itself.
    extras = Jsonb([change[1] for change in changes])
    await conn.execute(RECORD_EACH, (CHANGES_LOCK_ID, kind, ids, extras, ids))


async def record_deleted(conn: Connection, deleted: list[DictRow]) -> None:
    """Log deleted executions (rows with ``id`` and ``task_id``); call last in the transaction."""
    if not deleted:
        return
    await conn.execute(
        _LOCKED + "INSERT INTO execution_changes (execution_id, kind, payload)"
        " SELECT d.id, 'deleted',"
        " jsonb_build_object('executionId', d.id, 'taskId', d.task_id, 'phase', 'deleted')"
        " FROM held CROSS JOIN unnest(%s::text[], %s::text[])"
        "  WITH ORDINALITY AS d (id, task_id, n)"
        " ORDER BY d.n",
        (CHANGES_LOCK_ID, [row["id"] for row in deleted], [row["task_id"] for row in deleted]),
    )


async def notify(nc: NATS) -> None:
    """Tell every gateway replica's change streams to read the log now; call after
    committing a change. Best effort: the streams poll anyway."""
    await ping(nc, CHANGES_NOTIFY_SUBJECT)
