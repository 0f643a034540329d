"""A service that starts before its database: the pool opens once the server accepts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from figranium_common import db
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres

REFUSED_BEFORE_START = 3  # connections the stand-in turns away before the server starts


async def test_a_pool_opened_before_its_server_starts_connects_once_it_does(
    tmp_path: Path,
) -> None:
    server = LocalPostgres(tmp_path / "pg", free_port(), fast=True)
    await asyncio.to_thread(server.ensure_initialised)

    # Until the server starts, the port is held by a stand-in that closes each connection
    # at once, as a server still starting up does; it counts them.
    turned_away = 0
    enough = asyncio.Event()

    async def turn_away(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal turned_away
        writer.close()
        turned_away += 1
        if turned_away >= REFUSED_BEFORE_START:
            enough.set()

    stand_in = await asyncio.start_server(turn_away, "127.0.0.1", server.port)
    opening = asyncio.create_task(db.open_pool(server.url, max_size=1, wait=60))
    async with asyncio.timeout(60):
        await enough.wait()
    stand_in.close()
    await stand_in.wait_closed()

    await asyncio.to_thread(server.__enter__)
    try:
        async with await opening as pool, pool.connection() as conn:
            cur = await conn.execute("SELECT 1 AS one")
            assert await cur.fetchone() == {"one": 1}
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)
