"""SQL for the saved browser states (``task_browser_state``), read and changed as a whole:
the cookies routes and the cookie states, which are the tasks' states by task id.

States are sealed at rest (``figranium_common.queue``); these functions open and seal them,
so callers see Playwright's storage state. A change to one state reads it ``FOR UPDATE``:
a run saving its state at the same moment waits, and neither change is lost half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from figranium_common.db import Pool
from figranium_common.jsontypes import StorageState
from figranium_common.models import epoch_ms
from figranium_common.queue import load_browser_states, seal_browser_state
from figranium_common.secretbox import SecretBox


@dataclass(frozen=True)
class SavedState:
    task_id: str
    task_name: str | None
    updated_at: int | None  # epoch ms
    state: StorageState


_LIST = (
    "SELECT s.task_id, s.updated_at, t.body->>'name' AS name"
    " FROM task_browser_state s JOIN tasks t ON t.id = s.task_id"
)


async def saved_states(pool: Pool, box: SecretBox, task_id: str | None = None) -> list[SavedState]:
    """Every task's saved state (or one task's), oldest task id first."""
    where, params = (" WHERE s.task_id = %s", (task_id,)) if task_id else ("", ())
    async with pool.connection() as conn:
        cur = await conn.execute(_LIST + where + " ORDER BY s.task_id", params)
        rows = await cur.fetchall()
        opened = await load_browser_states(conn, box, [row["task_id"] for row in rows])
    return [
        SavedState(row["task_id"], row["name"], epoch_ms(row["updated_at"]), opened[row["task_id"]])
        for row in rows
        if row["task_id"] in opened
    ]


async def put_state(pool: Pool, box: SecretBox, task_id: str, state: StorageState) -> bool:
    """Set a task's state; False when there is no such task."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO task_browser_state (task_id, state)"
            " SELECT id, %s FROM tasks WHERE id = %s"
            " ON CONFLICT (task_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
            (Jsonb(seal_browser_state(box, state)), task_id),
        )
        return cur.rowcount > 0


async def delete_state(pool: Pool, task_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM task_browser_state WHERE task_id = %s", (task_id,))
        return cur.rowcount > 0


async def clear_states(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM task_browser_state")
        return cur.rowcount


# Returns the changed state, or None to leave it as it is.
Change = Callable[[StorageState], StorageState | None]


async def change_states(
    pool: Pool, box: SecretBox, change: Change, task_id: str | None = None
) -> int:
    """Apply ``change`` to every saved state (or one task's), under their row locks; how
    many changed."""
    changed = 0
    where, params = (" WHERE task_id = %s", (task_id,)) if task_id else ("", ())
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT task_id FROM task_browser_state" + where + " ORDER BY task_id FOR UPDATE",
            params,
        )
        task_ids = [row["task_id"] for row in await cur.fetchall()]
        opened = await load_browser_states(conn, box, task_ids)
        for locked_id, state in opened.items():
            new = change(state)
            if new is None:
                continue
            await conn.execute(
                "UPDATE task_browser_state SET state = %s, updated_at = now() WHERE task_id = %s",
                (Jsonb(seal_browser_state(box, new)), locked_id),
            )
            changed += 1
    return changed
