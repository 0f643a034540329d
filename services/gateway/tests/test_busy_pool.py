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
