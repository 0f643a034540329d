"""Cabinet items' bytes go with them: deleted after the rows that named them, by retention
(``CABINET_RETENTION_DAYS``), and by a sweep of objects no item names.

Rows are deleted first, in their transaction, and the objects once it committed: a crash
in between leaves objects no row names (never a row without its bytes), which the sweep
deletes once they are older than :func:`orphan_grace`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo

from figranium_common.config import Config
from figranium_common.db import Pool
from figranium_common.errors import describe
from figranium_common.nats import cabinets_store
from figranium_gateway.retention import ROUND_SLACK, delete_objects, list_objects, parse_mtime
from figranium_gateway.store import cabinets, settings

log = structlog.get_logger(__name__)

# Its own lock and marker: independent of the executions' retention (RETENTION_LOCK_ID).
CABINET_RETENTION_LOCK_ID = 0x46_49_47_43  # "FIGC"
LAST_ROUND_SETTING = "cabinet_retention_last_round"
MIN_ORPHAN_GRACE = timedelta(hours=1)


def orphan_grace(config: Config) -> timedelta:
    """How old an object no item names must be before the sweep deletes it.

    A runner stores a download's bytes when it happens, and the item is made when the
    run's result is ingested: up to the run's timeout later, plus as long as the result
    may wait in its stream. Uploads make their item right after their bytes are stored.
    """
    waited = timedelta(seconds=config.run_timeout_seconds + config.run_events_max_age_seconds)
    return max(MIN_ORPHAN_GRACE, waited)


def orphans(
    objects: Iterable[ObjectInfo], referenced: Collection[str], older_than: datetime
) -> list[str]:
    """Objects no item names and stored before ``older_than``."""
    found = []
    for info in objects:
        name = info.name or ""
        if info.deleted or not name or name in referenced:
            continue
        mtime = parse_mtime(info.mtime)
        if mtime is not None and mtime < older_than:
            found.append(name)
    return found


async def delete_objects_logged(js: JetStreamContext, names: list[str]) -> None:
    """Delete objects whose rows are gone already: a failure is logged, not answered (the
    sweep deletes the leftovers)."""
    if not names:
        return
    try:
        await delete_objects(await cabinets_store(js), names)
    except Exception as exc:
        log.warning("cabinets.objects_not_deleted", objects=len(names), error=describe(exc))


@dataclass(frozen=True)
class CabinetRound:
    items: int  # objects of items retention deleted
    orphans: int  # objects the sweep found no item naming


async def cabinet_round(
    pool: Pool,
    js: JetStreamContext,
    *,
    days: float,
    grace: timedelta,
    interval_seconds: float,
) -> CabinetRound | None:
    """One round, done by one replica at a time (as ``retention.retention_round``); None
    when another replica has it. ``days`` 0 keeps items of any age."""
    bucket = await cabinets_store(js)
    async with pool.connection() as conn, conn.transaction():
        every = interval_seconds * ROUND_SLACK
        if not await settings.take_turn(conn, LAST_ROUND_SETTING, CABINET_RETENTION_LOCK_ID, every):
            return None
        expired = await cabinets.delete_items_older_than(conn, days) if days > 0 else []
        # Listed before the names are read: an item made meanwhile is among the names.
        listed = await list_objects(bucket)
        referenced = await cabinets.referenced_objects(conn)
        stray = orphans(listed, referenced, datetime.now(UTC) - grace)
        await settings.stamp_turn(conn, LAST_ROUND_SETTING)
    await delete_objects(bucket, {*expired, *stray})
    return CabinetRound(items=len(expired), orphans=len(set(stray) - set(expired)))


async def run_cabinet_cleanup(pool: Pool, js: JetStreamContext, config: Config) -> None:
    """A round every ``RETENTION_INTERVAL_SECONDS``, from start-up on."""
    grace = orphan_grace(config)
    while True:
        try:
            result = await cabinet_round(
                pool,
                js,
                days=config.cabinet_retention_days,
                grace=grace,
                interval_seconds=config.retention_interval_seconds,
            )
            if result is not None and (result.items or result.orphans):
                log.info("cabinets.retention_round", items=result.items, orphans=result.orphans)
        except Exception as exc:
            log.warning("cabinets.retention_failed", error=describe(exc))
        await asyncio.sleep(config.retention_interval_seconds)
