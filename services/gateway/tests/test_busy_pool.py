"""A request that waits too long for a database connection: busy pool or database down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from figranium_common import db
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_gateway.errors import error_middleware
from figranium_gateway.state import POOL


@pytest.fixture
async def pool(postgres: LocalPostgres) -> AsyncIterator[db.Pool]:
    opened = await db.open_pool(postgres.url, max_size=2)
    try:
        yield opened
    finally:
        await opened.close()


async def _one(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute("SELECT 1 AS one")
        row = await cur.fetchone()
    return web.json_response(row)


def _client(pool: db.Pool) -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[error_middleware])
    app[POOL] = pool
    app.router.add_get("/one", _one)
    return TestClient(TestServer(app))


async def _returned(pool: db.Pool) -> None:
    """Until the pool's worker took back the connection just returned (it does so in a task
    of its own)."""
    for _ in range(500):
        if not db.all_in_use(pool):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the connection did not go back to the pool within 5 s")


async def test_connections_handed_out_are_counted_until_they_return(pool: db.Pool) -> None:
    assert not db.all_in_use(pool)
    async with pool.connection():
        assert not db.all_in_use(pool)
        async with pool.connection():
            assert db.all_in_use(pool)
        await _returned(pool)
        assert not db.all_in_use(pool)
    async with pool.connection(), pool.connection():
        assert db.all_in_use(pool)  # both again, the returned one included
    await _returned(pool)


async def test_a_pool_that_handed_out_a_connection_within_its_timeout_is_busy(
    pool: db.Pool,
) -> None:
    """Under load a connection may be back in the pool, between two requests, at the
    moment another request's wait times out: the database answered meanwhile, so that
    request met a busy pool, not an outage."""
    assert not db.busy(pool)  # nothing handed out yet
    async with pool.connection():
        pass
    await _returned(pool)
    assert not db.all_in_use(pool)
    assert db.busy(pool)


async def test_a_busy_pool_answers_server_busy_with_retry_after(pool: db.Pool) -> None:
    async with _client(pool) as client, AsyncExitStack() as held:
        for _ in range(pool.max_size):
            await held.enter_async_context(pool.connection())
        response = await client.get("/one")  # waits the pool's timeout, then gives up
        assert response.status == 503
        body = await response.json()
        assert body["error"] == "SERVER_BUSY"
        assert int(response.headers["Retry-After"]) > 0
        await held.aclose()
        await _returned(pool)
        response = await client.get("/one")
        assert response.status == 200
        assert await response.json() == {"one": 1}


async def test_a_database_gone_is_storage_unavailable_not_busy(tmp_path: Path) -> None:
    with LocalPostgres(tmp_path / "pg", free_port(), fast=True) as server:
        pool = await db.open_pool(server.url, max_size=2)
        try:
            async with _client(pool) as client:
                assert (await client.get("/one")).status == 200
                server.stop()
                await asyncio.sleep(db.CHECK_AFTER_IDLE_SECONDS + 0.2)  # checked when taken
                response = await client.get("/one")
                assert response.status == 503
                assert (await response.json())["error"] == "STORAGE_UNAVAILABLE"
                assert "Retry-After" not in response.headers
        finally:
            await pool.close()


# --- the health and readiness probe -------------------------------------------------------


async def _probe_connections(conn: db.Connection) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
        (db.PROBE_APPLICATION_NAME,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _take_all(pool: db.Pool, held: AsyncExitStack) -> list[db.Connection]:
    return [await held.enter_async_context(pool.connection()) for _ in range(pool.max_size)]


async def test_the_probe_answers_while_every_pool_connection_is_taken(
    pool: db.Pool, postgres: LocalPostgres
) -> None:
    probe = db.DatabaseProbe(pool, postgres.url, timeout=1.0)
    try:
        assert await probe.error() is None  # through the pool
        async with AsyncExitStack() as held:
            await _take_all(pool, held)
            # Through the pool, the check would wait for a connection until its timeout.
            assert await probe.error() is None
    finally:
        await probe.close()


async def test_checks_at_once_share_one_connection_and_one_answer(
    pool: db.Pool, postgres: LocalPostgres
) -> None:
    probe = db.DatabaseProbe(pool, postgres.url, timeout=2.0)
    async with AsyncExitStack() as held:
        conn, *_ = await _take_all(pool, held)
        try:
            first = asyncio.create_task(probe.error())
            others = [asyncio.create_task(probe.error()) for _ in range(20)]
            await asyncio.sleep(0)
            first.cancel()  # a caller that goes away takes the answer from no one else
            assert await asyncio.gather(*others) == [None] * 20
            assert await probe.error() is None
            assert await _probe_connections(conn) == 1
        finally:
            await probe.close()
        for _ in range(50):  # a backend leaves pg_stat_activity a moment after its client
            if await _probe_connections(conn) == 0:
                break
            await asyncio.sleep(0.1)
        assert await _probe_connections(conn) == 0


async def test_the_probe_follows_the_database_through_a_restart(tmp_path: Path) -> None:
    with LocalPostgres(tmp_path / "pg", free_port(), fast=True) as server:
        pool = await db.open_pool(server.url, max_size=2)
        probe = db.DatabaseProbe(pool, server.url, timeout=2.0)
        try:
            assert await probe.error() is None
            async with AsyncExitStack() as held:
                await _take_all(pool, held)
                assert await probe.error() is None  # on the probe's own connection
                await asyncio.to_thread(server.stop)
                assert await probe.error() is not None
            assert await probe.error() is not None  # through the pool
            await asyncio.to_thread(server.start)
            await asyncio.to_thread(server.wait_ready)
            # Healthy once the pool has reconnected, on its own schedule.
            for _ in range(100):
                if await probe.error() is None:
                    break
                await asyncio.sleep(0.2)
            async with pool.connection(timeout=0.5) as conn:
                await conn.execute("SELECT 1")
            async with AsyncExitStack() as held:
                await _take_all(pool, held)
                assert await probe.error() is None  # its own connection, opened again
        finally:
            await probe.close()
            await pool.close()
