"""Retention: old executions and captures are deleted, so disk use stays bounded.

Captures live in the JetStream object store, named ``<executionId>_...``; deleting an
execution row does not free them, so whoever deletes executions (this job, ``DELETE
/api/executions/:id``, ``POST /api/executions/clear``) deletes their captures here too,
and their rows in the captures index (``store.captures``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from figranium_common.changelog import record_deleted
from figranium_common.config import Config
from figranium_common.db import Pool
from figranium_common.errors import describe
from figranium_common.nats import captures_store
from figranium_gateway.store import captures, change_log, executions, settings

log = structlog.get_logger(__name__)

# Distinct from the migration lock and from the change log's (changelog.CHANGES_LOCK_ID), which
# every change-writing commit takes: a round must not hold up those writers. The same in
# every replica.
RETENTION_LOCK_ID = 0x46_49_47_54  # "FIGT"
LAST_ROUND_SETTING = "retention_last_round"
# A round is skipped when another replica did one less than this share of the interval
# ago; the slack keeps timers that fire a little early from skipping a round.
ROUND_SLACK = 0.9


def owner(name: str, ids: Collection[str]) -> str | None:
    """The execution a capture belongs to: the longest id that prefixes ``name`` + ``_``.

    The longest, because run ids may contain ``_``: ``nightly_2_...`` belongs to
    ``nightly_2`` even when ``nightly`` exists too.
    """
    found = None
    for index, char in enumerate(name):
        if char == "_" and name[:index] in ids:
            found = name[:index]
    return found


def parse_mtime(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    # Comparing naive with aware times raises; object store times are UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def doomed_captures(
    objects: Iterable[ObjectInfo],
    *,
    deleted_ids: Collection[str],
    kept_ids: Collection[str] = (),
    older_than: datetime | None = None,
) -> list[str]:
    """Names of the captures to delete: those of deleted executions, and too old ones.

    ``kept_ids`` are executions that remain and whose ids extend a deleted one; their
    captures share the deleted execution's prefix and must stay.
    """
    known = {*deleted_ids, *kept_ids}
    doomed = []
    for info in objects:
        name = info.name or ""
        if info.deleted or not name:
            continue
        mtime = parse_mtime(info.mtime)
        too_old = older_than is not None and mtime is not None and mtime < older_than
        if too_old or owner(name, known) in deleted_ids:
            doomed.append(name)
    return doomed


async def list_objects(bucket: ObjectStore) -> list[ObjectInfo]:
    """The bucket's objects (deleted ones included, marked so)."""
    try:
        return await bucket.list()
    except NotFoundError:  # an empty bucket answers "not found"
        return []


async def delete_objects(bucket: ObjectStore, names: Iterable[str]) -> int:
    """Delete the named objects; answers how many were there to delete."""
    removed = 0
    for name in names:
        try:
            await bucket.delete(name)
            removed += 1
        except ObjectNotFoundError:  # deleted meanwhile by another request or replica
            continue
    return removed


async def delete_captures_of(pool: Pool, js: JetStreamContext, execution_ids: list[str]) -> int:
    """Delete the captures of executions already deleted; returns how many went."""
    if not execution_ids:
        return 0
    async with pool.connection() as conn:
        kept = await executions.ids_extending(conn, execution_ids)
    bucket = await captures_store(js)
    names = doomed_captures(await list_objects(bucket), deleted_ids=execution_ids, kept_ids=kept)
    removed = await delete_objects(bucket, names)
    await captures.forget_names(pool, names)
    return removed


async def delete_captures_logged(
    pool: Pool, js: JetStreamContext, execution_ids: list[str]
) -> int | None:
    """As :func:`delete_captures_of` for request handlers: the executions are gone already,
    so a failure here is logged (the next retention round removes the leftovers by age)
    rather than answered as if the delete had failed."""
    try:
        return await delete_captures_of(pool, js, execution_ids)
    except Exception as exc:
        log.warning(
            "captures.cleanup_failed",
            executions=len(execution_ids),
            error=describe(exc),
        )
        return None


@dataclass(frozen=True)
class RoundResult:
    executions: int
    captures: int


async def retention_round(
    pool: Pool, js: JetStreamContext, *, days: float, interval_seconds: float
) -> RoundResult | None:
    """One round, done by one replica at a time; None when another replica has it.

    Under a transaction advisory lock (released by commit, rollback or a lost connection,
    so a replica that dies mid-round cannot block the others), and only if no replica did
    a round within the interval: replicas' timers are not aligned, and without the shared
    marker each would repeat the work. Executions are deleted in the same transaction as
    their captures: if deleting captures fails, the rows come back and the next round
    tries again.
    """
    async with pool.connection() as conn, conn.transaction():
        every = interval_seconds * ROUND_SLACK
        if not await settings.take_turn(conn, LAST_ROUND_SETTING, RETENTION_LOCK_ID, every):
            return None
        cutoff, rows = await executions.delete_finished_older_than(conn, days * 86400)
        deleted = [r["id"] for r in rows]
        kept = await executions.ids_extending(conn, deleted) if deleted else []
        bucket = await captures_store(js)
        names = doomed_captures(
            await list_objects(bucket), deleted_ids=deleted, kept_ids=kept, older_than=cutoff
        )
        removed = await delete_objects(bucket, names)
        await captures.forget(conn, names)
        await settings.stamp_turn(conn, LAST_ROUND_SETTING)
        # Last in the transaction: change ids must follow commit order (see changes.py).
        await record_deleted(conn, rows)
        return RoundResult(executions=len(deleted), captures=removed)


CHANGES_KEPT = timedelta(days=1)


async def run_retention(pool: Pool, js: JetStreamContext, config: Config) -> None:
    """Every ``RETENTION_INTERVAL_SECONDS``, from start-up on; ``RETENTION_DAYS=0`` keeps all."""
    if config.retention_days == 0:
        log.info("retention.disabled", reason="RETENTION_DAYS=0")
        return
    while True:
        try:
            result = await retention_round(
                pool,
                js,
                days=config.retention_days,
                interval_seconds=config.retention_interval_seconds,
            )
            if result is not None:  # one line per round across all replicas: cheap
                # The change log only serves reconnecting streams: a day is plenty.
                pruned = await change_log.prune_changes(pool, CHANGES_KEPT)
                log.info(
                    "retention.round",
                    executions=result.executions,
                    captures=result.captures,
                    changes=pruned,
                )
        except Exception as exc:
            log.warning("retention.failed", error=describe(exc))
        await asyncio.sleep(config.retention_interval_seconds)
