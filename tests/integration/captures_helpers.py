"""Putting and listing capture objects directly in a stack's object store, and
reporting them as a runner does, so that the gateway indexes them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats
import psycopg
from nats.js.errors import NotFoundError

from figranium_common.capture_models import StoredCapture, capture_kind
from figranium_common.models import CaptureEvent, RunEvent, now_ms
from figranium_common.nats import captures_store, event_subject
from tests.integration.stack import Stack, count_rows, wait_until


async def _put(url: str, names: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        bucket = await captures_store(nc.jetstream())
        for name in names:
            await bucket.put(name, b"capture bytes")
    finally:
        await nc.close()


async def _publish(nats_url: str, events: Sequence[RunEvent]) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for event in events:
            await js.publish(event_subject(event.execution_id), event.model_dump_json().encode())
    finally:
        await nc.close()


def publish_events(nats_url: str, events: Sequence[RunEvent]) -> None:
    """Publish ``events`` on their runs' event subjects, as a runner does."""
    asyncio.run(_publish(nats_url, events))


def capture_event(execution_id: str, name: str, size: int) -> CaptureEvent:
    stored = StoredCapture(name=name, kind=capture_kind(name), size=size, at=now_ms())
    return CaptureEvent(execution_id=execution_id, attempt=1, seq=0, captures=[stored])


def execution_of(name: str) -> str:
    """The execution a test capture belongs to: its name up to ``_agent_``/``_download_``."""
    for mark in ("_agent_", "_download_"):
        if mark in name:
            return name[: name.index(mark)]
    return name


def put_objects(nats_url: str, names: list[str]) -> None:
    """Objects in the bucket that no run reported (as before the gateway indexed them)."""
    asyncio.run(_put(nats_url, names))


def indexed(database_url: str, names: list[str]) -> int:
    return count_rows(database_url, "SELECT count(*) FROM captures WHERE name = ANY(%s)", (names,))


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


def put_captures(stack: Stack, names: list[str]) -> None:
    """Captures stored and reported as a runner does (a ``capture`` event each); returns
    once the gateway indexed them all."""
    put_objects(stack.env["NATS_URL"], names)
    size = len(b"capture bytes")
    events = [capture_event(execution_of(name), name, size) for name in names]
    publish_events(stack.env["NATS_URL"], events)
    database_url = stack.env["DATABASE_URL"]
    wait_until(lambda: indexed(database_url, names) == len(set(names)), 30, "captures indexed")


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
