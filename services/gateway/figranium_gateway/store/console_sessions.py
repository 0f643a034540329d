"""SQL for ``console_sessions``: the web console's signed-in sessions."""

from __future__ import annotations

from datetime import timedelta

from figranium_common.db import Pool


async def create_session(pool: Pool, id_digest: str, key_mark: str, lifetime: timedelta) -> None:
    """Store a new session (and forget the expired ones, so the table cannot grow)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO console_sessions (id_digest, key_mark, expires_at)"
            " VALUES (%s, %s, now() + %s)",
            (id_digest, key_mark, lifetime),
        )


async def touch_session(
    pool: Pool, id_digest: str, key_mark: str, idle: timedelta, touch_after: timedelta
) -> bool:
    """Whether the session is alive: not expired, idle less than ``idle``, opened with the
    current key. Its last-seen time is written only when older than ``touch_after``, so
    most requests cost one read and no write."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT last_seen_at < now() - %s AS stale FROM console_sessions"
            " WHERE id_digest = %s AND key_mark = %s AND expires_at > now()"
            " AND last_seen_at > now() - %s",
            (touch_after, id_digest, key_mark, idle),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        if row["stale"]:
            await conn.execute(
                "UPDATE console_sessions SET last_seen_at = now() WHERE id_digest = %s",
                (id_digest,),
            )
        return True


async def end_session(pool: Pool, id_digest: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM console_sessions WHERE id_digest = %s", (id_digest,))


async def end_all_sessions(pool: Pool) -> int:
    """Sign every console out (the API key changed); how many sessions ended."""
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM console_sessions")
        return cur.rowcount
