"""The console's schedules: the list with each one's description and next runs, an edit
form, and a confirmed delete; all plain forms.

Saving goes through ``schedule_changes`` (the merge, validation and storage of
``POST /api/schedules/:id``) and the previews through its ``preview`` (the describe
endpoint's), so the console can store nothing the API would refuse and shows the same
description.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiMapping
from pydantic import ValidationError

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.schedules import ScheduleBody, zone
from figranium_gateway import schedule_changes
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.errors import ApiError, found
from figranium_gateway.request_input import task_id_of, task_not_found
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import schedules as schedule_store
from figranium_gateway.store import tasks as task_store

api = Router("console")

LIST = "/console/schedules"
TASK_FIELD = "task"
AFTER_FIELD = "after"
PAGE_SIZE = 25  # schedules a page previews (each one's description and next runs)
_HTML = {200: "text/html"}
_FORM_ANSWERS: dict[int, None] = {303: None, 403: None, 404: None}
FREQUENCIES = ("interval", "hourly", "daily", "weekly", "monthly")
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
# The form's number fields, each a field of the schedule body of the same name.
NUMBER_FIELDS = ("intervalMinutes", "hour", "minute", "dayOfMonth")
RUN_FORMAT = "%a %Y-%m-%d %H:%M"

FormValues = dict[str, str | bool | list[str]]


def _edit_url(task_id: str) -> str:
    return f"{LIST}/{quote(task_id, safe='')}"


def _preview(schedule: JsonObject) -> JsonObject | None:
    """The describe endpoint's answer for a stored schedule, its next runs written in the
    schedule's time zone; None when the stored schedule is no longer valid."""
    try:
        body = ScheduleBody.model_validate(schedule)
    except ValidationError:
        return None
    answer = schedule_changes.preview(body, datetime.now(UTC))
    where = zone(body.timezone)
    runs = answer["nextRuns"]
    assert isinstance(runs, list)
    answer["runs"] = [
        {"iso": run, "text": datetime.fromisoformat(run).astimezone(where).strftime(RUN_FORMAT)}
        for run in map(str, runs)
    ]
    answer["timezone"] = body.timezone
    return answer


@api.get(
    LIST,
    "The console's schedules: each with its description and next runs, 25 a page",
    query={
        TASK_FIELD: "a task id: go to its schedule's page (the form to schedule a task)",
        AFTER_FIELD: "the page after this task id (the list is in task id order)",
    },
    responses={200: None, 303: None},
    content_types=_HTML,
)
async def schedule_list(request: web.Request) -> web.Response:
    task_id = request.query.get(TASK_FIELD, "").strip()
    if task_id:
        return see_other(_edit_url(task_id))
    pool = request.app[POOL]
    after = request.query.get(AFTER_FIELD) or None
    entries = await schedule_store.list_schedules(pool, after=after, limit=PAGE_SIZE + 1)
    total, before = await schedule_store.count_schedules(pool, after)
    rows = []
    for entry in entries[:PAGE_SIZE]:
        schedule = entry["schedule"]
        assert isinstance(schedule, dict)
        rows.append({**entry, "preview": _preview(schedule)})
    more = len(entries) > PAGE_SIZE
    context = {
        "schedules": rows,
        "total": total,
        "first": before + 1,
        "paged": after is not None,
        "next": f"{LIST}?{urlencode({AFTER_FIELD: rows[-1]['taskId']})}" if more else None,
    }
    return render(request, "schedules.html", context)


def _values_of(schedule: JsonObject | None) -> FormValues:
    """The edit form's fields for a stored schedule (none: a new, enabled one)."""
    stored = schedule or {}
    days = stored.get("daysOfWeek")
    values: FormValues = {
        "enabled": stored.get("enabled", True) is not False,
        # A frequency's cron was resolved from its fields: only a cron set as such is shown.
        "cron": "" if stored.get("frequency") else str(stored.get("cron") or ""),
        "frequency": str(stored.get("frequency") or ""),
        "daysOfWeek": [str(day) for day in days] if isinstance(days, list) else [],
        "timezone": str(stored.get("timezone") or "UTC"),
    }
    for name in NUMBER_FIELDS:
        value = stored.get(name)
        values[name] = "" if value is None else str(value)
    return values


def _values_from(form: MultiMapping[object]) -> FormValues:
    def text(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    values: FormValues = {name: text(name) for name in ("cron", "frequency", "timezone")}
    values["enabled"] = "enabled" in form
    values["daysOfWeek"] = [day for day in form.getall("daysOfWeek", []) if isinstance(day, str)]
    for name in NUMBER_FIELDS:
        values[name] = text(name)
    return values


def _body_of(values: FormValues) -> JsonObject:
    """The ``POST /api/schedules/:id`` body the form means: a cron, when given, wins and
    the frequency fields are left out; empty fields are null (their default applies)."""

    def given(name: str) -> JsonValue:
        value = values[name]
        return value or None

    body: JsonObject = {"enabled": bool(values["enabled"]), "timezone": given("timezone")}
    if values["cron"]:
        body["cron"] = given("cron")
        return body
    body["cron"] = None
    body["frequency"] = given("frequency")
    body["daysOfWeek"] = given("daysOfWeek")
    for name in NUMBER_FIELDS:
        body[name] = given(name)
    return body


async def _edit_page(
    request: web.Request,
    values: FormValues | None = None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    task_id = task_id_of(request)
    task = found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))
    stored = task.get("schedule")
    schedule = stored if isinstance(stored, dict) else None
    context = {
        "task": task,
        "schedule": schedule,
        "preview": None if schedule is None else _preview(schedule),
        "values": values or _values_of(schedule),
        "error": error,
        "frequencies": FREQUENCIES,
        "weekdays": list(enumerate(WEEKDAYS)),
        "action": _edit_url(task_id),
    }
    return render(request, "schedule.html", context, status=status)


@api.get(
    LIST + "/{task_id}",
    "The console's form to set a task's schedule",
    responses={200: None, 404: None},
    content_types=_HTML,
)
async def edit_schedule(request: web.Request) -> web.Response:
    return await _edit_page(request)


@api.post(
    LIST + "/{task_id}",
    "Set a task's schedule from the console's form (merged and checked as POST /api/schedules/:id)",
    responses={**_FORM_ANSWERS, 400: None},
    content_types={400: "text/html"},
)
async def save_schedule(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    values = _values_from(await request.post())
    try:
        saved = await schedule_changes.save(
            request.app, task_id, _body_of(values), datetime.now(UTC)
        )
    except ApiError as exc:
        return await _edit_page(request, values, error=exc.details, status=400)
    if saved is None:
        raise task_not_found(task_id)
    return see_other(LIST)


@api.get(
    LIST + "/{task_id}/delete",
    "The console's confirmation before removing a task's schedule",
    responses={200: None, 404: None},
    content_types=_HTML,
)
async def confirm_delete(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    task = found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))
    context = {"task": task, "action": _edit_url(task_id) + "/delete"}
    return render(request, "delete_schedule.html", context)


@api.post(
    LIST + "/{task_id}/delete",
    "Remove a task's schedule (the console's confirmed form)",
    responses={**_FORM_ANSWERS},
)
async def delete_schedule(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    if not await schedule_changes.remove(request.app, task_id):
        raise task_not_found(task_id)
    return see_other(LIST)
