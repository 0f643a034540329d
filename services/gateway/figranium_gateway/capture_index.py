"""Keeping the captures index (``store.captures``) whole for captures no run reported.

Runs report what they store (``CaptureEvent``, ``ResultEvent.stored_captures``). Two
kinds of capture come without such a report: those stored before the index existed,
indexed once by :func:`backfill` at a gateway's start (one replica, once per database),
and those of runners of the previous release, which report nothing:
:func:`with_referred` indexes their objects when their result comes.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import structlog
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, ObjectInfo

from figranium_common.capture_models import StoredCapture, capture_kind
from figranium_common.db import Pool
from figranium_common.errors import describe
from figranium_common.models import ResultEvent
from figranium_common.nats import CAPTURES_BUCKET, captures_store
from figranium_gateway.retention import list_objects, parse_mtime
from figranium_gateway.store import captures, settings

log = structlog.get_logger(__name__)

# Distinct from the other advisory locks (migrations, change log, retention).
BACKFILL_LOCK_ID = 0x46_49_47_49  # "FIGI"
BACKFILL_SETTING = "captures_backfilled"
BATCH = 1000
# A runner's clock may run behind the server's that stamps the bucket's messages.
CLOCK_SLACK_MS = 10_000
# Longest wait for the bucket's next metadata message when reading those of a run.
READ_SECONDS = 2.0
_URL = re.compile(r"^/captures/([A-Za-z0-9_.:-]{1,255})$")
# A run names its captures "<execution id>_agent_…" and "<execution id>_download_…".
_RUN_NAME = re.compile(r"^(.+?)_(?:agent|download)_")


def execution_of(name: str) -> str:
    """The execution a capture belongs to, from its name: before the runner's mark, else
    before its first ``_``, else the name itself."""
    if matched := _RUN_NAME.match(name):
        return matched.group(1)
    return name.split("_", 1)[0]


def stored_of(info: ObjectInfo) -> StoredCapture:
    """An object of the captures bucket as the index keeps it."""
    name = info.name or ""
    mtime = parse_mtime(info.mtime)
    return StoredCapture(
        name=name,
        kind=capture_kind(name),
        size=info.size or 0,
        at=0 if mtime is None else int(mtime.timestamp() * 1000),
    )


async def with_referred(js: JetStreamContext, event: ResultEvent) -> ResultEvent:
    """``event`` with ``stored_captures`` read from the bucket when the runner sent none
    (a runner of the previous release) and its result names a capture (its
    ``screenshot_url``): the run's objects among those stored since it started."""
    if event.stored_captures or not _URL.match(event.result.screenshot_url or ""):
        return event
    since = event.at - event.duration_ms - CLOCK_SLACK_MS
    try:
        stored = await stored_since(js, event.execution_id, since)
    except Exception as exc:  # NATS away: the run's captures stay unlisted
        log.warning("captures.index_skipped", error=describe(exc))
        return event
    return event.model_copy(update={"stored_captures": stored})


async def stored_since(
    js: JetStreamContext, execution_id: str, since_ms: int
) -> list[StoredCapture]:
    """The objects named ``<execution_id>_…`` stored since ``since_ms`` and still there.

    Read from the bucket's metadata messages of that time on (an ordered consumer starting
    there), so it costs what was stored since, not what the bucket holds."""
    start = datetime.fromtimestamp(max(0, since_ms) / 1000, UTC)
    sub = await js.subscribe(
        f"$O.{CAPTURES_BUCKET}.M.>",
        stream=f"OBJ_{CAPTURES_BUCKET}",
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start),
    )
    found: dict[str, ObjectInfo] = {}
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=READ_SECONDS)
            except TimeoutError:  # nothing stored since
                break
            info = ObjectInfo.from_response(json.loads(msg.data))
            if (info.name or "").startswith(f"{execution_id}_"):
                found[info.name] = info  # the latest message of a name says what it is
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return [stored_of(info) for info in found.values() if not info.deleted]


async def backfill(pool: Pool, js: JetStreamContext) -> int | None:
    """Index every object of the bucket not indexed yet, once per database: the replica
    that gets the lock does it and stamps it done in the same transaction (a replica that
    dies midway leaves it for the next start). None when it was not this replica's to do."""
    async with pool.connection() as conn, conn.transaction():
        if not await settings.take_turn(conn, BACKFILL_SETTING, BACKFILL_LOCK_ID, math.inf):
            return None
        objects = [
            info
            for info in await list_objects(await captures_store(js))
            if not info.deleted and info.name
        ]
        rows = [
            captures.Indexed(execution_of(info.name or ""), stored_of(info)) for info in objects
        ]
        added = 0
        for start in range(0, len(rows), BATCH):
            added += len(await captures.insert_captures(conn, rows[start : start + BATCH]))
        await settings.stamp_turn(conn, BACKFILL_SETTING)
    log.info("captures.backfilled", objects=len(rows), added=added)
    return added


async def run_backfill(pool: Pool, js: JetStreamContext) -> None:
    """:func:`backfill`, as a start-up task that never stops the gateway."""
    try:
        if await backfill(pool, js) is None:
            log.info("captures.backfill_skipped")
    except Exception as exc:
        log.warning("captures.backfill_failed", error=describe(exc))
