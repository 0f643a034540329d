"""SQL for ``tasks``, their versions (``task_versions``) and their saved browser state
(``task_browser_state``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonMapping, JsonObject
from figranium_common.models import epoch_ms, now_ms
from figranium_common.redact import keep_masked_secrets

MAX_VERSIONS = 30

_RETURNED = "RETURNING id, body, updated_at"


class TaskVersion(TypedDict):
    """A version of a task: its state before a change (``snapshot``), and when."""

    id: str
    timestamp: int | None
    snapshot: JsonObject


def _task_out(row: DictRow) -> JsonObject:
    body: JsonObject = dict(row["body"])
    body["id"] = row["id"]
    body["updatedAt"] = epoch_ms(row["updated_at"])
    return body


def _version_out(row: DictRow) -> TaskVersion:
    return {"id": row["id"], "timestamp": epoch_ms(row["created_at"]), "snapshot": row["snapshot"]}


async def list_tasks(pool: Pool) -> list[JsonObject]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, body, updated_at FROM tasks ORDER BY updated_at DESC, id"
        )
        return [_task_out(row) for row in await cur.fetchall()]


async def list_task_summaries(pool: Pool) -> list[DictRow]:
    """Id, name and description of every task: only those leave the database, so the list
    does not decode every task's whole body."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, body->>'name' AS name, body->>'description' AS description"
            " FROM tasks ORDER BY updated_at DESC, id"
        )
        return list(await cur.fetchall())


def search_statement(text: str, limit: int) -> tuple[str, list[object]]:
    """The SQL of ``search_task_summaries``. Without ``text`` there is no filter, so the
    newest-first index (tasks_newest) gives the ``limit`` rows without reading the rest."""
    where, params = "", []
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where, params = " WHERE id ILIKE %s OR body->>'name' ILIKE %s", [pattern, pattern]
    sql = (
        "SELECT id, body->>'name' AS name, body->>'url' AS url FROM tasks"
        f"{where} ORDER BY updated_at DESC, id LIMIT %s"
    )
    return sql, [*params, limit]


async def search_task_summaries(pool: Pool, text: str, limit: int) -> list[DictRow]:
    """Id and name of the newest ``limit`` tasks whose id or name contains ``text``
    (case-insensitive; every task for an empty ``text``)."""
    sql, params = search_statement(text, limit)
    async with pool.connection() as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())


async def get_task(pool: Pool, task_id: str) -> JsonObject | None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, body, updated_at FROM tasks WHERE id = %s", (task_id,))
        row = await cur.fetchone()
        return None if row is None else _task_out(row)


async def locked_body(conn: Connection, task_id: str) -> JsonObject | None:
    """The task's stored body, its row locked until the transaction ends; None: no task."""
    cur = await conn.execute("SELECT body FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
    row = await cur.fetchone()
    return None if row is None else dict(row["body"])


async def save_task(pool: Pool, task_id: str, body: JsonObject, *, snapshot: bool) -> JsonObject:
    """Create or overwrite a task; with ``snapshot`` the previous state becomes a version."""
    body = _storable(body)
    async with pool.connection() as conn, conn.transaction():
        previous = await locked_body(conn, task_id)
        body = _keep_schedule(body, previous or {})
        body = keep_masked_secrets(body, previous)
        if snapshot and previous is not None:
            await _snapshot(conn, task_id, previous)
        cur = await conn.execute(
            "INSERT INTO tasks (id, body) VALUES (%s, %s)"
            f" ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now() {_RETURNED}",
            (task_id, Jsonb(body)),
        )
        row = await cur.fetchone()
        assert row is not None
        return _task_out(row)


async def _snapshot(conn: Connection, task_id: str, body: JsonObject) -> None:
    await conn.execute(
        "INSERT INTO task_versions (task_id, id, snapshot)"
        " VALUES (%s, 'ver_' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint, %s)"
        " ON CONFLICT DO NOTHING",
        (task_id, Jsonb(body)),
    )
    await _trim_versions(conn, task_id)


async def _trim_versions(conn: Connection, task_id: str) -> None:
    """Keep the task's newest MAX_VERSIONS versions."""
    await conn.execute(
        "DELETE FROM task_versions WHERE task_id = %s AND id NOT IN ("
        " SELECT id FROM task_versions WHERE task_id = %s"
        " ORDER BY created_at DESC, id DESC LIMIT %s)",
        (task_id, task_id, MAX_VERSIONS),
    )


async def list_versions(pool: Pool, task_id: str) -> list[TaskVersion]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, created_at, snapshot FROM task_versions WHERE task_id = %s"
            " ORDER BY created_at DESC, id DESC",
            (task_id,),
        )
        return [_version_out(row) for row in await cur.fetchall()]


async def update_task(
    pool: Pool, task_id: str, change: Callable[[JsonObject], JsonObject]
) -> JsonObject | None:
    """Apply ``change`` to the stored body under a row lock, keeping the old one as a
    version first; None when there is no such task. ``change`` may raise to refuse."""
    async with pool.connection() as conn, conn.transaction():
        current = await locked_body(conn, task_id)
        if current is None:
            return None
        body = _keep_schedule(change(dict(current)), current)
        body = keep_masked_secrets(body, current)
        await _snapshot(conn, task_id, current)
        cur = await conn.execute(
            f"UPDATE tasks SET body = %s, updated_at = now() WHERE id = %s {_RETURNED}",
            (Jsonb(_storable(body)), task_id),
        )
        updated = await cur.fetchone()
        assert updated is not None
        return _task_out(updated)


async def touch_task(pool: Pool, task_id: str) -> JsonObject | None:
    """Set ``last_opened`` without making a version (opening a task changes nothing)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE tasks SET body = jsonb_set(body, '{last_opened}', to_jsonb(%s::bigint))"
            f" WHERE id = %s {_RETURNED}",
            (now_ms(), task_id),
        )
        row = await cur.fetchone()
        return None if row is None else _task_out(row)


async def delete_task(pool: Pool, task_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM tasks WHERE id = %s", (task_id,))
        return cur.rowcount == 1


async def get_version(pool: Pool, task_id: str, version_id: str) -> TaskVersion | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, created_at, snapshot FROM task_versions WHERE task_id = %s AND id = %s",
            (task_id, version_id),
        )
        row = await cur.fetchone()
        return None if row is None else _version_out(row)


async def delete_version(pool: Pool, task_id: str, version_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM task_versions WHERE task_id = %s AND id = %s", (task_id, version_id)
        )
        return cur.rowcount == 1


async def clear_versions(pool: Pool, task_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM task_versions WHERE task_id = %s", (task_id,))
        return cur.rowcount


# --- the task's schedule field, kept by the schedules' transactions -------------------------


async def set_schedule(conn: Connection, task_id: str, schedule: JsonMapping | None) -> bool:
    """Replace the task's ``schedule`` (None: JSON null); False when there is no such task."""
    cur = await conn.execute(
        "UPDATE tasks SET body = jsonb_set(body, '{schedule}', %s), updated_at = now()"
        " WHERE id = %s",
        (Jsonb(schedule), task_id),
    )
    return cur.rowcount == 1


async def merge_schedule(conn: Connection, task_id: str, fields: JsonMapping) -> None:
    """Merge ``fields`` into the task's ``schedule`` object, if it has one. Not a new version
    and no new ``updated_at``: the task did not change."""
    await conn.execute(
        "UPDATE tasks SET body = jsonb_set(body, '{schedule}', body->'schedule' || %s)"
        " WHERE id = %s AND jsonb_typeof(body->'schedule') = 'object'",
        (Jsonb(fields), task_id),
    )


def _keep_schedule(body: JsonMapping, current: JsonMapping) -> JsonObject:
    """A task's ``schedule`` belongs to /api/schedules, which keeps it in step with the
    scheduler's table; saving, patching or rolling back a task leaves it as it is."""
    kept = {k: v for k, v in body.items() if k != "schedule"}
    if "schedule" in current:
        kept["schedule"] = current["schedule"]
    return kept


def _storable(body: JsonMapping) -> JsonObject:
    return {k: v for k, v in body.items() if k not in ("id", "updatedAt", "versions")}


# --- the saved browser state ----------------------------------------------------------------


async def save_browser_state(conn: Connection, execution_id: str, state: str) -> None:
    """Keep ``state`` (sealed) as the browser state of the execution's task, for its next run.

    Keyed by the execution's task; ad-hoc runs and runs of since-deleted tasks keep nothing.
    """
    await conn.execute(
        "INSERT INTO task_browser_state (task_id, state)"
        " SELECT e.task_id, %s FROM executions e"
        " WHERE e.id = %s AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.task_id)"
        " ON CONFLICT (task_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        (Jsonb(state), execution_id),
    )


# --- export, import and reset (figranium_gateway.backup) ------------------------------------


async def read_all(conn: Connection) -> list[JsonObject]:
    """Every task as stored, with ``id``, ``updatedAt`` and its ``versions`` (newest first,
    as Figranium keeps them in the task)."""
    cur = await conn.execute(
        "SELECT t.id, t.body, t.updated_at, COALESCE((SELECT jsonb_agg(jsonb_build_object("
        " 'id', v.id, 'timestamp', (extract(epoch FROM v.created_at) * 1000)::bigint,"
        " 'snapshot', v.snapshot) ORDER BY v.created_at DESC, v.id DESC)"
        " FROM task_versions v WHERE v.task_id = t.id), '[]'::jsonb) AS versions"
        " FROM tasks t ORDER BY t.id"
    )
    return [{**_task_out(row), "versions": row["versions"]} for row in await cur.fetchall()]


async def write_imported(conn: Connection, task_id: str, body: JsonMapping) -> None:
    """Create or overwrite a task with ``body`` as is (its ``schedule`` included)."""
    await conn.execute(
        "INSERT INTO tasks (id, body) VALUES (%s, %s)"
        " ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
        (task_id, Jsonb(_storable(body))),
    )


async def add_versions(conn: Connection, task_id: str, versions: list[JsonObject]) -> None:
    """Add the versions the task lacks (by id), dated by their ``timestamp``; the newest
    MAX_VERSIONS are kept."""
    for version in versions:
        await conn.execute(
            "INSERT INTO task_versions (task_id, id, created_at, snapshot)"
            " VALUES (%s, %s, COALESCE(to_timestamp(%s::float8 / 1000), now()), %s)"
            " ON CONFLICT DO NOTHING",
            (task_id, version["id"], version.get("timestamp"), Jsonb(version["snapshot"])),
        )
    await _trim_versions(conn, task_id)


async def delete_all(conn: Connection) -> int:
    """Delete every task, and with them their versions, schedules and browser state."""
    cur = await conn.execute("DELETE FROM tasks")
    return cur.rowcount


# --- cabinet references (figranium_gateway.store.cabinets) ----------------------------------


def moved_cabinet(body: JsonMapping, from_id: str, to_id: str) -> JsonObject:
    """``body`` with ``downloadCabinetId`` and each action's ``cabinetId`` that named
    ``from_id`` naming ``to_id`` instead (what Figranium rewrites)."""
    moved: JsonObject = dict(body)
    if moved.get("downloadCabinetId") == from_id:
        moved["downloadCabinetId"] = to_id
    actions = moved.get("actions")
    if isinstance(actions, list):
        moved["actions"] = [
            {**action, "cabinetId": to_id}
            if isinstance(action, dict) and action.get("cabinetId") == from_id
            else action
            for action in actions
        ]
    return moved


# Tasks, or versions, that name the cabinet %(from)s; the rewrite itself is moved_cabinet.
_NAMING_CABINET = (
    "({col}->>'downloadCabinetId' = %(from)s"
    " OR {col}->'actions' @> jsonb_build_array(jsonb_build_object('cabinetId', %(from)s::text)))"
)


async def move_cabinet_references(conn: Connection, from_id: str, to_id: str) -> int:
    """Make every task and task version naming cabinet ``from_id`` name ``to_id``; not a new
    version. Answers how many tasks changed."""
    ids = {"from": from_id}
    cur = await conn.execute(
        f"SELECT id, body FROM tasks WHERE {_NAMING_CABINET.format(col='body')} FOR UPDATE", ids
    )
    tasks = await cur.fetchall()
    for row in tasks:
        await conn.execute(
            "UPDATE tasks SET body = %s, updated_at = now() WHERE id = %s",
            (Jsonb(moved_cabinet(row["body"], from_id, to_id)), row["id"]),
        )
    cur = await conn.execute(
        "SELECT task_id, id, snapshot FROM task_versions"
        f" WHERE {_NAMING_CABINET.format(col='snapshot')} FOR UPDATE",
        ids,
    )
    for row in await cur.fetchall():
        await conn.execute(
            "UPDATE task_versions SET snapshot = %s WHERE task_id = %s AND id = %s",
            (Jsonb(moved_cabinet(row["snapshot"], from_id, to_id)), row["task_id"], row["id"]),
        )
    return len(tasks)
