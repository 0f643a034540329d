"""Putting and listing capture objects directly in a stack's object store."""

from __future__ import annotations

import asyncio

import nats
import psycopg
from nats.js.errors import NotFoundError

from figranium_common.nats import captures_store


async def _put(url: str, names: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        bucket = await captures_store(nc.jetstream())
        for name in names:
            await bucket.put(name, b"capture bytes")
    finally:
        await nc.close()


async def _names(url: str) -> set[str]:
    nc = await nats.connect(url)
    try:
        bucket = await captures_store(nc.jetstream())
        try:
            return {info.name or "" for info in await bucket.list() if not info.deleted}
        except NotFoundError:
            return set()
    finally:
        await nc.close()


def put_captures(nats_url: str, names: list[str]) -> None:
    asyncio.run(_put(nats_url, names))


def capture_names(nats_url: str) -> set[str]:
    return asyncio.run(_names(nats_url))


def insert_finished_execution(database_url: str, execution_id: str, *, days_old: int = 0) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO executions (id, source, phase, status, outcome, task_snapshot,"
            " created_at, finished_at)"
            " VALUES (%s, 'api', 'finished', 200, 'success', '{}',"
            " now() - make_interval(days => %s), now() - make_interval(days => %s))",
            (execution_id, days_old, days_old),
        )
