"""Schedules: set, preview, list and delete a task's schedule (Figranium's /api/schedules).

The scheduler service fires them; this module only validates, stores, and wakes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_common.schedules import ScheduleBody, Timing, describe, iso
from figranium_gateway import schedule_changes
from figranium_gateway.errors import describe_validation_error
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_json_object, task_id_of, task_not_found
from figranium_gateway.routing import Router
from figranium_gateway.state import CONFIG, POOL
from figranium_gateway.store import schedules as schedule_store
from figranium_gateway.store import tasks as task_store
from figranium_gateway.validation import checked_webhook_url, webhook_url_type

api = Router("schedules")

# A replica is running while its heartbeat is at most this many intervals old.
HEARTBEATS_ALIVE = 3


class ScheduleOut(BaseModel):
    """A stored schedule: the body's fields, the resolved ``cron`` and the run times."""

    model_config = ConfigDict(extra="allow")
    enabled: bool | None = None
    cron: str | None = None
    nextRun: int | None = None
    lastRun: int | None = None
    lastRunStatus: str | None = None
    lastRunDurationMs: int | None = None


class ScheduleEntry(BaseModel):
    taskId: str
    taskName: str
    mode: str
    schedule: ScheduleOut


class ScheduleList(BaseModel):
    schedules: list[ScheduleEntry]


class SetAnswer(BaseModel):
    schedule: ScheduleOut
    description: str
    nextRun: int | None


class DeleteAnswer(BaseModel):
    success: bool
    schedule: None


class StatusAnswer(BaseModel):
    schedule: ScheduleOut | None
    cron: str | None
    description: str | None
    isValid: bool


class DescribeAnswer(BaseModel):
    valid: bool
    cron: str | None = None
    description: str | None = None
    nextRun: int | None = None
    nextRuns: list[str] = []
    error: str | None = None


class ScheduledTask(BaseModel):
    taskId: str
    cron: str | None
    nextRun: str | None


class OverallStatus(BaseModel):
    running: bool
    scheduledCount: int
    tasks: list[ScheduledTask]


_NOT_FOUND = {404: ErrorBody}


async def _body(request: web.Request) -> JsonObject:
    """The body as sent, its ``webhookUrl`` checked (the stored one was when it was set)."""
    raw = await read_json_object(request)
    webhook_url_type(raw)
    url = raw.get("webhookUrl")
    if isinstance(url, str):
        allow_private = request.app[CONFIG].allow_private_networks
        raw["webhookUrl"] = await checked_webhook_url(url, allow_private=allow_private)
    return raw


@api.get(
    "/api/schedules/status/all",
    "Whether a scheduler is running, and every enabled schedule's next run",
    responses={200: OverallStatus},
)
async def overall_status(request: web.Request) -> web.Response:
    alive = HEARTBEATS_ALIVE * request.app[CONFIG].scheduler_heartbeat_seconds
    overview = await schedule_store.scheduled_overview(request.app[POOL], alive)
    tasks = [
        {
            "taskId": row["task_id"],
            "cron": row["cron"] or f"every {row['interval_minutes']} minutes",
            "nextRun": None if row["next_run"] is None else iso(row["next_run"]),
        }
        for row in overview["rows"]
    ]
    return web.json_response(
        {"running": overview["replicas"] > 0, "scheduledCount": len(tasks), "tasks": tasks}
    )


@api.get("/api/schedules", "Every task with a schedule", responses={200: ScheduleList})
async def list_schedules(request: web.Request) -> web.Response:
    return web.json_response({"schedules": await schedule_store.list_schedules(request.app[POOL])})


@api.post(
    "/api/schedules/{task_id}",
    "Change a task's schedule: the body is merged into the stored one (a valid cron wins"
    " over frequency; null deletes a field)",
    body=ScheduleBody,
    responses={200: SetAnswer, 400: ErrorBody, **_NOT_FOUND},
)
async def set_schedule(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    saved = await schedule_changes.save(
        request.app, task_id, await _body(request), datetime.now(UTC)
    )
    if saved is None:
        raise task_not_found(task_id)
    schedule = saved.schedule
    return web.json_response(
        {
            "schedule": schedule,
            "description": describe(saved.timing),
            "nextRun": schedule["nextRun"],
        }
    )


@api.delete(
    "/api/schedules/{task_id}",
    "Remove a task's schedule",
    responses={200: DeleteAnswer, **_NOT_FOUND},
)
async def delete_schedule(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    if not await schedule_changes.remove(request.app, task_id):
        raise task_not_found(task_id)
    return web.json_response({"success": True, "schedule": None})


@api.get(
    "/api/schedules/{task_id}/status",
    "A task's schedule, its cron and its description",
    responses={200: StatusAnswer, **_NOT_FOUND},
)
async def schedule_status(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    found = await schedule_store.get_schedule(request.app[POOL], task_id)
    if found is None:
        if await task_store.get_task(request.app[POOL], task_id) is None:
            raise task_not_found(task_id)
        return web.json_response(
            {"schedule": None, "cron": None, "description": None, "isValid": False}
        )
    row = found["row"]
    timing = Timing(row["cron"], row["interval_minutes"], row["timezone"])
    return web.json_response(
        {
            "schedule": found["schedule"],
            "cron": timing.cron,
            "description": describe(timing),
            "isValid": True,
        }
    )


@api.post(
    "/api/schedules/{task_id}/describe",
    "Describe a schedule and its next runs without saving it",
    body=ScheduleBody,
    responses={200: DescribeAnswer, 400: ErrorBody, **_NOT_FOUND},
)
async def describe_schedule(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    raw = await read_json_object(request)
    if await task_store.get_task(request.app[POOL], task_id) is None:
        raise task_not_found(task_id)
    try:
        body = ScheduleBody.model_validate(raw)
    except ValidationError as exc:
        # A preview answers "not valid, because …" instead of refusing: that is its job.
        return web.json_response({"valid": False, "error": describe_validation_error(exc)})
    return web.json_response(schedule_changes.preview(body, datetime.now(UTC)))
