"""Cabinets from a test's side: creating, uploading, and looking into the cabinets bucket
directly over NATS."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import nats
from nats.js.errors import NotFoundError

from figranium_common.db import open_pool
from figranium_common.nats import cabinets_store
from figranium_gateway.cabinet_cleanup import CabinetRound, cabinet_round


def new_cabinet(api: httpx.Client, prefix: str = "Cabinet") -> str:
    answer = api.post("/api/cabinets", json={"name": f"{prefix} {uuid.uuid4().hex[:8]}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def upload(
    api: httpx.Client, cabinet_id: str, name: str, data: bytes, *, expect: int = 201
) -> httpx.Response:
    answer = api.post(
        f"/api/cabinets/{cabinet_id}/items",
        files={"file": (name, data, "application/octet-stream")},
    )
    assert answer.status_code == expect, answer.text
    return answer


def items(api: httpx.Client, cabinet_id: str) -> list[dict[str, object]]:
    answer = api.get(f"/api/cabinets/{cabinet_id}/items")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def _names(url: str) -> set[str]:
    nc = await nats.connect(url)
    try:
        bucket = await cabinets_store(nc.jetstream())
        try:
            return {info.name or "" for info in await bucket.list() if not info.deleted}
        except NotFoundError:  # an empty bucket
            return set()
    finally:
        await nc.close()


def object_names(nats_url: str) -> set[str]:
    """The objects in the cabinets bucket."""
    return asyncio.run(_names(nats_url))


async def _put(url: str, name: str, data: bytes) -> None:
    nc = await nats.connect(url)
    try:
        await (await cabinets_store(nc.jetstream())).put(name, data)
    finally:
        await nc.close()


def put_object(nats_url: str, name: str, data: bytes) -> None:
    asyncio.run(_put(nats_url, name, data))


async def _round(database_url: str, nats_url: str, days: float, grace: timedelta) -> CabinetRound:
    pool = await open_pool(database_url, max_size=2)
    nc = await nats.connect(nats_url)
    try:
        done = await cabinet_round(pool, nc.jetstream(), days=days, grace=grace, interval_seconds=0)
        assert done is not None, "another replica held the cabinet retention lock"
        return done
    finally:
        await nc.close()
        await pool.close()


def retention_round(
    database_url: str, nats_url: str, *, days: float, grace: timedelta
) -> CabinetRound:
    """One cabinet retention round, run here against a stack's database and NATS."""
    return asyncio.run(_round(database_url, nats_url, days, grace))
