"""The scheduler connects to PostgreSQL and NATS, applies migrations, and stops on request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg

from figranium_common.settings import Settings
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_scheduler.__main__ import serve


async def test_serve_until_stopped(tmp_path: Path) -> None:
    with (
        LocalPostgres(tmp_path / "pg", free_port(), fast=True) as postgres,
        LocalNats(tmp_path / "nats", free_port()) as nats_server,
    ):
        settings = Settings.model_validate(
            {"DATABASE_URL": postgres.url, "NATS_URL": nats_server.url}
        )
        stopping = asyncio.Event()
        serving = asyncio.create_task(serve(settings, stopping))
        await asyncio.sleep(1.5)
        assert not serving.done()
        stopping.set()
        await asyncio.wait_for(serving, timeout=10)
        with psycopg.connect(postgres.url) as conn:
            row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert row is not None and row[0] >= 1
