"""PostgreSQL access: the connection pool and the numbered-SQL migrations (``db`` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import time
import weakref
from importlib import resources

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from figranium_common.errors import describe, first_line

log = structlog.get_logger(__name__)

# Any constant works, as long as every service uses the same one.
MIGRATION_LOCK_ID = 0x46_49_47_52  # "FIGR"
_MIGRATION_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
Connection = AsyncConnection[DictRow]

# A connection back in the pool for less than this is handed out again without a check.
CHECK_AFTER_IDLE_SECONDS = 1.0
# How often a starting service tries a database that does not accept connections yet.
STARTUP_RETRY_SECONDS = 0.5


class _IdleCheck:
    """psycopg_pool's connection check, only for connections idle long enough to matter.

    Checking on every checkout costs a round trip per checkout, about a third of a busy
    gateway's queries. A connection that went back to the pool a moment ago is as good as
    the check would find it; one that did break in that moment (the server restarted) fails
    its query, which callers already handle as a database outage, and is then discarded.
    """

    def __init__(self, idle_seconds: float) -> None:
        self._idle_seconds = idle_seconds
        self._returned: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        # Handed out and not back yet; a connection that broke meanwhile is discarded by
        # the pool, and leaves this set with its last reference.
        self.in_use: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.last_checkout = -math.inf  # monotonic time a connection last left the pool

    async def check(self, conn: Connection) -> None:
        # Called on every checkout, the connection's way out of the pool.
        returned = self._returned.pop(conn, None)
        if returned is None or time.monotonic() - returned >= self._idle_seconds:
            await AsyncConnectionPool.check_connection(conn)
        self.in_use.add(conn)
        self.last_checkout = time.monotonic()

    async def returned(self, conn: Connection) -> None:
        self.in_use.discard(conn)
        self._returned[conn] = time.monotonic()


_CHECKS: weakref.WeakKeyDictionary[Pool, _IdleCheck] = weakref.WeakKeyDictionary()


def all_in_use(pool: Pool) -> bool:
    """Whether every connection the pool may open is open and handed out: a request that
    timed out waiting met a busy pool, not a database it cannot reach (whose connections
    are being opened again, not in use)."""
    check = _CHECKS.get(pool)
    return check is not None and len(check.in_use) >= pool.max_size


def busy(pool: Pool) -> bool:
    """Whether a request that timed out waiting for a connection met a busy pool rather
    than a database it cannot reach: every connection is handed out, or one was handed out
    (its check passed) while the request waited. Counting only the connections handed out
    at the moment of the timeout would call a pool that is busy but had one connection
    between two requests just then a database outage."""
    check = _CHECKS.get(pool)
    if check is None:
        return False
    recently = time.monotonic() - check.last_checkout < pool.timeout
    return recently or len(check.in_use) >= pool.max_size


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10, wait: float = 60.0) -> Pool:
    """Open a pool, waiting up to ``wait`` seconds for the server to accept connections.

    Connections idle in the pool for a second or more are checked when taken from it, so
    a pool outlives a database restart without a service restart.
    """
    deadline = time.monotonic() + wait
    await _server_accepting(url, deadline)
    idle_check = _IdleCheck(CHECK_AFTER_IDLE_SECONDS)
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": True},
        check=idle_check.check,
        reset=idle_check.returned,
        # A connection that fails is tried once more, then given up: the pool opens new
        # ones as requests need them, so it keeps working across a database restart.
        # (Its retries back off without a cap, which is why start-up waits on its own.)
        reconnect_timeout=0,
        timeout=5,  # a request waits this long for a connection, then gets a clear 503
        name="figranium",
    )
    _CHECKS[pool] = idle_check
    await pool.open(wait=True, timeout=max(deadline - time.monotonic(), 1.0))
    return pool


async def _server_accepting(url: str, deadline: float) -> None:
    """Until PostgreSQL accepts a connection, trying every STARTUP_RETRY_SECONDS, or until
    ``deadline`` (the pool then reports the timeout). A service may start before its
    database does: ``make run`` starts them together, and so may a cluster's scheduler."""
    for attempt in itertools.count():
        left = deadline - time.monotonic()
        try:
            conn = await AsyncConnection.connect(url, connect_timeout=max(int(left), 1))
        except psycopg.OperationalError as exc:
            if time.monotonic() + STARTUP_RETRY_SECONDS >= deadline:
                return
            if attempt == 0:
                log.info("db.waiting_for_server", error=first_line(exc))
            await asyncio.sleep(STARTUP_RETRY_SECONDS)
        else:
            await conn.close()
            return


# How the probe's own connection shows in pg_stat_activity.
PROBE_APPLICATION_NAME = "figranium-probe"


class DatabaseProbe:
    """Whether PostgreSQL answers ``SELECT 1`` within ``timeout``: health and readiness.

    Asked through the pool, so that an answer also says the pool can hand out a working
    connection (after a database restart the pool reconnects on its own schedule, and a
    replica is healthy only once it has). Except while the pool is queueing requests:
    then it is busy, not broken, and a check taken from it would wait behind every
    request queued for a connection (a gateway under a burst of run calls answered
    its health check hundreds of milliseconds late, and a readiness probe could take a
    replica out of service for being busy). The database is then asked on a connection
    of the probe's own, opened when first needed and again after any failure; checks that
    arrive while such a question is under way share its answer.
    """

    def __init__(self, pool: Pool, url: str, timeout: float) -> None:
        self._pool = pool
        self._url = url
        self._timeout = timeout
        self._conn: AsyncConnection[tuple[object, ...]] | None = None
        self._asking: asyncio.Task[str | None] | None = None

    async def error(self) -> str | None:
        """Why the database did not answer; None when it did."""
        if not self._pool_is_queueing():
            return await self._through_pool()
        if self._asking is None:
            self._asking = asyncio.create_task(self._ask_directly(), name="database-probe")
            self._asking.add_done_callback(self._asked)
        # Shielded: a caller that goes away leaves the question to the others waiting on it.
        return await asyncio.shield(self._asking)

    def _pool_is_queueing(self) -> bool:
        """Whether a connection asked for now would wait: every one the pool may open is
        handed out, or other requests are waiting already (the pool grows one connection
        at a time)."""
        return all_in_use(self._pool) or self._pool.get_stats().get("requests_waiting", 0) > 0

    async def _through_pool(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.connection(timeout=self._timeout) as conn:
                    await conn.execute("SELECT 1")
        except Exception as exc:
            return describe(exc)
        return None

    def _asked(self, asking: asyncio.Task[str | None]) -> None:
        if self._asking is asking:
            self._asking = None

    async def _ask_directly(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                if self._conn is None or self._conn.closed:
                    self._conn = await AsyncConnection.connect(
                        self._url, autocommit=True, application_name=PROBE_APPLICATION_NAME
                    )
                await self._conn.execute("SELECT 1")
        except Exception as exc:
            # Broken, or in an unknown state after a timeout: opened afresh next time.
            await self._discard()
            return describe(exc)
        return None

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
            await asyncio.wait({self._asking})
        await self._discard()


def migration_files() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every bundled migration, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("figranium_common.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


async def apply_migrations(pool: Pool) -> list[str]:
    """Apply pending migrations under an advisory lock; returns the names applied."""
    applied: list[str] = []
    async with pool.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row["version"] for row in await cur.fetchall()}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
                log.info("db.migration_applied", migration=name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied
