"""Changing and previewing a task's schedule: the one path the API's schedule routes and
the console's schedule pages share, so both merge, validate, store and describe alike."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import structlog
from aiohttp import web
from pydantic import ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_common.nats import SCHEDULES_NOTIFY_SUBJECT, ping
from figranium_common.schedule_merge import merge_schedule
from figranium_common.schedule_runs import NextRuns
from figranium_common.schedules import ScheduleBody, Timing, describe, iso, resolve, upcoming
from figranium_gateway.errors import ApiError, describe_validation_error
from figranium_gateway.state import NC, POOL
from figranium_gateway.store import schedules as schedule_store

log = structlog.get_logger(__name__)

PREVIEW_RUNS = 5
# The previews' next runs, kept per timing until the first of them passes.
PREVIEW_CACHE = NextRuns(4096)


class Saved(NamedTuple):
    schedule: JsonObject  # as the task now shows it
    timing: Timing


def schedule_body(raw: JsonObject) -> ScheduleBody:
    """``raw`` validated as a schedule; 400 ``INVALID_SCHEDULE`` naming the field."""
    try:
        return ScheduleBody.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(400, "INVALID_SCHEDULE", describe_validation_error(exc)) from None


def preview(body: ScheduleBody, now: datetime) -> JsonObject:
    """What a valid schedule means: its cron, plain-language description and next runs
    after ``now`` (``POST /api/schedules/:id/describe``'s answer)."""
    timing, _ = resolve(body)
    runs = PREVIEW_CACHE(timing, now, PREVIEW_RUNS)
    return {
        "valid": True,
        "cron": timing.cron,
        "description": describe(timing),
        "nextRun": int(runs[0].timestamp() * 1000),
        "nextRuns": [iso(run) for run in runs],
    }


class _Merge:
    """Plans the schedule ``body`` makes of the stored one (figranium_common.schedule_merge)
    and keeps that plan, for the answer."""

    def __init__(self, body: JsonObject, now: datetime) -> None:
        self.body = body
        self.now = now
        self.planned: schedule_store.Planned | None = None

    def __call__(self, stored: JsonObject | None) -> schedule_store.Planned:
        merged = schedule_body(merge_schedule(stored, self.body))
        timing, schedule = resolve(merged)
        next_run = upcoming(timing, self.now, 1)[0] if merged.enabled else None
        self.planned = schedule_store.Planned(schedule, timing, next_run)
        return self.planned


async def save(app: web.Application, task_id: str, body: JsonObject, now: datetime) -> Saved | None:
    """Merge ``body`` into the task's schedule, validate and store it, and wake the
    schedulers; None when there is no such task. An invalid result (ApiError
    ``INVALID_SCHEDULE``) changes nothing."""
    merge = _Merge(body, now)
    schedule = await schedule_store.save_schedule(app[POOL], task_id, merge)
    if schedule is None or merge.planned is None:
        return None
    timing = merge.planned.timing
    await ping(app[NC], SCHEDULES_NOTIFY_SUBJECT)
    log.info(
        "schedule.saved",
        task_id=task_id,
        cron=timing.cron,
        interval_minutes=timing.interval_minutes,
        timezone=timing.timezone,
        enabled=schedule.get("enabled"),
        next_run=schedule["nextRun"],
    )
    return Saved(schedule, timing)


async def remove(app: web.Application, task_id: str) -> bool:
    """Delete the task's schedule and wake the schedulers; False: no such task."""
    if not await schedule_store.delete_schedule(app[POOL], task_id):
        return False
    await ping(app[NC], SCHEDULES_NOTIFY_SUBJECT)
    log.info("schedule.deleted", task_id=task_id)
    return True
