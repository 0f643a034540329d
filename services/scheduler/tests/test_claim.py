"""Claiming against a real PostgreSQL: once per slot, overlap, missed runs, intervals,
headful tasks without a headful runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from figranium_common import db
from figranium_common.secretbox import SecretBox
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_scheduler import claim

GRACE = timedelta(seconds=60)
BOX = SecretBox(bytes(32))


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[db.Pool]:
    with LocalPostgres(tmp_path / "pg", free_port(), fast=True) as postgres:
        async with await db.open_pool(postgres.url, max_size=4) as opened:
            await db.apply_migrations(opened)
            yield opened


async def _schedule(
    pool: db.Pool,
    task_id: str,
    *,
    late: str,
    cron: str | None = "0 9 * * *",
    interval: int | None = None,
    policy: str = "run_once",
    overlap: bool = False,
    mode: str = "agent",
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO tasks (id, body) VALUES (%s, %s)",
            (task_id, Jsonb({"name": task_id, "mode": mode, "schedule": {"cron": cron}})),
        )
        await conn.execute(
            "INSERT INTO schedules (task_id, cron, interval_minutes, next_run, enabled,"
            " misfire_policy, allow_overlap) VALUES (%s, %s, %s, now() - %s::interval, true,"
            " %s, %s)",
            (task_id, cron, interval, late, policy, overlap),
        )


async def _claim(pool: db.Pool, limit: int = 100, headful: bool = True) -> claim.Claimed:
    return await claim.claim_due(
        pool, BOX, limit=limit, grace=GRACE, timeout_seconds=30, headful_available=headful
    )


async def _scalar(pool: db.Pool, query: str) -> object:
    async with pool.connection() as conn:
        cur = await conn.execute(query.encode())
        row = await cur.fetchone()
        assert row is not None
        return next(iter(row.values()))


async def test_a_due_schedule_fires_once_and_moves_on(pool: db.Pool) -> None:
    await _schedule(pool, "t1", late="1 second")
    first = await _claim(pool)
    assert [f.task_id for f in first.fired] == ["t1"] and first.skipped == []
    request = first.fired[0].request
    assert request.source == "scheduler" and request.task.id == "t1"
    assert request.execution_id.startswith("exec_")
    assert 1000 <= first.fired[0].lateness_ms < 60_000
    assert (await _claim(pool)).rows == 0
    assert await _scalar(pool, "SELECT count(*) FROM executions WHERE phase = 'queued'") == 1
    assert await _scalar(pool, "SELECT count(*) FROM execution_changes WHERE kind = 'queued'") == 1
    assert await _scalar(pool, "SELECT next_run > now() FROM schedules") is True
    assert await _scalar(
        pool,
        "SELECT (t.body->'schedule'->>'nextRun')::bigint"
        " = (extract(epoch FROM s.next_run) * 1000)::bigint"
        " FROM tasks t JOIN schedules s ON s.task_id = t.id",
    )


async def test_batches_respect_the_limit(pool: db.Pool) -> None:
    for i in range(5):
        await _schedule(pool, f"b{i}", late="1 second")
    assert len((await _claim(pool, limit=3)).fired) == 3
    assert len((await _claim(pool, limit=3)).fired) == 2


async def test_overlap_is_skipped_unless_allowed(pool: db.Pool) -> None:
    await _schedule(pool, "busy", late="1 second")
    await _schedule(pool, "parallel", late="1 second", overlap=True)
    await _claim(pool)
    async with pool.connection() as conn:
        await conn.execute("UPDATE schedules SET next_run = now() - interval '1 second'")
    second = await _claim(pool)
    assert [f.task_id for f in second.fired] == ["parallel"]
    assert second.skipped == [("busy", "overlap")]
    assert await _scalar(pool, "SELECT bool_and(next_run > now()) FROM schedules") is True


async def test_missed_runs_follow_the_policy(pool: db.Pool) -> None:
    await _schedule(pool, "once", late="3 days")
    await _schedule(pool, "skip", late="3 days", policy="skip")
    claimed = await _claim(pool)
    assert [f.task_id for f in claimed.fired] == ["once"]
    assert claimed.skipped == [("skip", "missed")]
    assert await _scalar(pool, "SELECT count(*) FROM executions") == 1


async def test_fixed_interval_keeps_its_phase(pool: db.Pool) -> None:
    await _schedule(pool, "every7", late="2 minutes", cron=None, interval=7)
    await _claim(pool)
    # Due 2 minutes ago: the next slot is 7 minutes after that due time, 5 from now.
    left = await _scalar(pool, "SELECT extract(epoch FROM next_run - now())::float8 FROM schedules")
    assert isinstance(left, float) and 290 < left < 301


async def test_headful_tasks_wait_for_a_headful_runner(pool: db.Pool) -> None:
    await _schedule(pool, "plain", late="1 second")
    await _schedule(pool, "visible", late="2 seconds", mode="headful")
    claimed = await _claim(pool, headful=False)
    assert [f.task_id for f in claimed.fired] == ["plain"]
    assert claimed.skipped == [("visible", "no_headful_runner")]
    assert await _scalar(pool, "SELECT count(*) FROM executions") == 1
    assert await _scalar(pool, "SELECT bool_and(next_run > now()) FROM schedules") is True
    async with pool.connection() as conn:
        await conn.execute("UPDATE schedules SET next_run = now() - interval '1 second'")
    again = await _claim(pool, headful=True)
    assert [f.task_id for f in again.fired] == ["visible"]
    assert again.fired[0].request.task.mode == "headful"
    assert again.skipped == [("plain", "overlap")]  # its first run is still queued
