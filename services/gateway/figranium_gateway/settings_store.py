"""SQL for the ``settings`` table (key → jsonb) beyond what ``store`` already has."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.types.json import Jsonb

from figranium_common.db import Pool
from figranium_common.queue import PROXY_PASSWORD
from figranium_common.runs import PROXIES_SETTING
from figranium_common.secretbox import SecretBox, is_sealed

_UPSERT = (
    "INSERT INTO settings (key, value) VALUES (%s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)


async def set_setting(pool: Pool, key: str, value: Any) -> None:
    async with pool.connection() as conn:
        await conn.execute(_UPSERT, (key, Jsonb(value)))


async def update_setting(pool: Pool, key: str, change: Callable[[Any], Any]) -> Any:
    """Replace the value with ``change(current)`` (None when absent) atomically; returns it.

    Two replicas adding a proxy at once must not lose one of them. ``FOR UPDATE`` locks
    nothing while the row does not exist yet, so a per-key transaction advisory lock
    serialises the writers instead. An exception from ``change`` leaves the value as it was.
    """
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('settings:' || %s))", (key,))
        cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))
        row = await cur.fetchone()
        updated = change(None if row is None else row["value"])
        await conn.execute(_UPSERT, (key, Jsonb(updated)))
        return updated


async def seal_proxy_passwords(pool: Pool, box: SecretBox) -> int:
    """Seal proxy passwords stored in clear by an earlier version; returns how many."""
    sealed = 0

    def seal(stored: Any) -> Any:
        nonlocal sealed
        if not isinstance(stored, list):
            return stored
        entries = []
        for entry in stored:
            password = entry.get("password") if isinstance(entry, dict) else None
            if isinstance(password, str) and password and not is_sealed(password):
                entry = {**entry, "password": box.seal(password, PROXY_PASSWORD)}
                sealed += 1
            entries.append(entry)
        return entries

    async with pool.connection() as conn:
        cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (PROXIES_SETTING,))
        row = await cur.fetchone()
    if row is not None and seal(row["value"]) != row["value"]:
        sealed = 0
        await update_setting(pool, PROXIES_SETTING, seal)
    return sealed
