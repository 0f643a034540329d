"""The scheduler connects to PostgreSQL and NATS, applies migrations, and stops on request."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import psycopg

from figranium_common.config import Config
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_scheduler.__main__ import serve


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_serve_until_stopped(tmp_path: Path) -> None:
    with (
        LocalPostgres(tmp_path / "pg", free_port(), fast=True) as postgres,
        LocalNats(tmp_path / "nats", free_port()) as nats_server,
    ):
        metrics_port = free_port()
        config = Config.model_validate(
            {
                "DATABASE_URL": postgres.url,
                "NATS_URL": nats_server.url,
                "SCHEDULER_METRICS_PORT": metrics_port,
            }
        )
        stopping = asyncio.Event()
        serving = asyncio.create_task(serve(config, stopping))
        await asyncio.sleep(1.5)
        assert not serving.done()
        text = await asyncio.to_thread(_scrape, metrics_port)
        for name in (
            "figranium_schedule_lateness_seconds_bucket",
            "figranium_schedules_fired_total",
            "figranium_schedule_lateness_seconds_count",
        ):
            assert name in text
        stopping.set()
        await asyncio.wait_for(serving, timeout=10)
        with psycopg.connect(postgres.url) as conn:
            row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert row is not None and row[0] >= 1
