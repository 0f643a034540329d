"""SQL for the ``settings`` table: one jsonb value per key.

The queuing code in ``figranium_common.queue`` also reads the proxies row, in the
transaction that gathers a run request; everything else of the gateway goes through here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

from psycopg.types.json import Jsonb

from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.proxy_choice import PROXY_PASSWORD
from figranium_common.runs import PROXIES_SETTING
from figranium_common.secretbox import SecretBox, is_sealed

_Value = TypeVar("_Value")

_UPSERT = (
    "INSERT INTO settings (key, value) VALUES (%s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)


async def read_setting(conn: Connection, key: str) -> JsonValue:
    """The stored value; None when the key is absent."""
    cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))
    row = await cur.fetchone()
    value: JsonValue = None if row is None else row["value"]
    return value


async def read_settings(conn: Connection, keys: Collection[str]) -> JsonObject:
    """The stored values of ``keys`` (absent keys left out), in the caller's transaction."""
    cur = await conn.execute("SELECT key, value FROM settings WHERE key = ANY(%s)", (list(keys),))
    return {row["key"]: row["value"] for row in await cur.fetchall()}


async def write_setting(conn: Connection, key: str, value: JsonValue) -> None:
    """Store ``value`` under ``key`` in the caller's transaction."""
    await conn.execute(_UPSERT, (key, Jsonb(value)))


async def delete_settings(conn: Connection, keys: Collection[str]) -> list[str]:
    """Forget ``keys``; returns those that were stored."""
    cur = await conn.execute(
        "DELETE FROM settings WHERE key = ANY(%s) RETURNING key", (list(keys),)
    )
    return sorted(row["key"] for row in await cur.fetchall())


async def get_setting(pool: Pool, key: str) -> JsonValue:
    async with pool.connection() as conn:
        return await read_setting(conn, key)


async def get_settings(pool: Pool, keys: Collection[str]) -> JsonObject:
    """The stored values of ``keys``, in one round trip; absent keys are left out."""
    async with pool.connection() as conn:
        return await read_settings(conn, keys)


async def setting_insert_if_absent(
    pool: Pool, key: str, value: JsonValue
) -> tuple[JsonValue, bool]:
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
        return await read_setting(conn, key), False


async def set_setting(pool: Pool, key: str, value: JsonValue) -> None:
    async with pool.connection() as conn:
        await conn.execute(_UPSERT, (key, Jsonb(value)))


async def update_setting(pool: Pool, key: str, change: Callable[[JsonValue], _Value]) -> _Value:
    """Replace the value with ``change(current)`` (None when absent) atomically; returns it.

    Two replicas adding a proxy at once must not lose one of them. ``FOR UPDATE`` locks
    nothing while the row does not exist yet, so a per-key transaction advisory lock
    serialises the writers instead. An exception from ``change`` leaves the value as it was.
    """
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('settings:' || %s))", (key,))
        updated = change(await read_setting(conn, key))
        await conn.execute(_UPSERT, (key, Jsonb(updated)))
        return updated


# --- a periodic job's turn, shared by the replicas -----------------------------------------


async def take_turn(conn: Connection, key: str, lock_id: int, every_seconds: float) -> bool:
    """Whether this replica does the periodic job whose last run is stamped under ``key``:
    it got the job's transaction advisory lock ``lock_id`` (released by commit, rollback
    or a lost connection) and no replica stamped a run within ``every_seconds``.

    Called in the transaction that does the job, and that ends with :func:`stamp_turn`.
    """
    cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS locked", (lock_id,))
    row = await cur.fetchone()
    if row is None or not row["locked"]:
        return False
    cur = await conn.execute(
        "SELECT extract(epoch FROM now()) - (value #>> '{}')::float8 AS age"
        " FROM settings WHERE key = %s",
        (key,),
    )
    row = await cur.fetchone()
    return row is None or row["age"] is None or row["age"] >= every_seconds


async def stamp_turn(conn: Connection, key: str) -> None:
    """Record that the job under ``key`` ran now (the database's clock, in epoch seconds)."""
    await conn.execute(
        "INSERT INTO settings (key, value) VALUES (%s, to_jsonb(extract(epoch FROM now())))"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        (key,),
    )


# --- stored values upgraded -----------------------------------------------------------------


async def seal_proxy_passwords(pool: Pool, box: SecretBox) -> int:
    """Seal proxy passwords stored in clear by an earlier version; returns how many."""
    sealed = 0

    def seal(stored: JsonValue) -> JsonValue:
        nonlocal sealed
        if not isinstance(stored, list):
            return stored
        entries: list[JsonValue] = []
        for entry in stored:
            if isinstance(entry, dict):
                password = entry.get("password")
                if isinstance(password, str) and password and not is_sealed(password):
                    entry = {**entry, "password": box.seal(password, PROXY_PASSWORD)}
                    sealed += 1
            entries.append(entry)
        return entries

    stored = await get_setting(pool, PROXIES_SETTING)
    if stored is not None and seal(stored) != stored:
        sealed = 0
        await update_setting(pool, PROXIES_SETTING, seal)
    return sealed
