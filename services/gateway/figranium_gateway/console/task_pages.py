"""The console's task list: search, create, duplicate and delete, all plain forms.

New and duplicated tasks go through the API's own validation (``validate_task``) and
storage, so the console can save nothing the API would refuse.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import structlog
from aiohttp import web
from pydantic import ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_common.models import now_ms
from figranium_gateway.console.gate import HOME
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.errors import ApiError, describe_validation_error, found
from figranium_gateway.request_input import task_id_of, task_not_found
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import tasks as task_store
from figranium_gateway.validation import validate_task

log = structlog.get_logger(__name__)
api = Router("console")

LIST_LIMIT = 200  # the newest matches shown; a search narrows further
SEARCH_FIELD = "q"
_HTML = {200: "text/html"}
_FORM_ANSWERS: dict[int, None] = {303: None, 403: None}
# A stored task's fields that belong to the stored row, not to a copy of it.
_NOT_COPIED = ("id", "updatedAt", "versions", "last_opened")


async def _list_page(
    request: web.Request,
    *,
    error: str | None = None,
    status: int = 200,
    name: str = "",
    url: str = "",
) -> web.Response:
    text = request.query.get(SEARCH_FIELD, "").strip()
    rows = await task_store.search_task_summaries(request.app[POOL], text, LIST_LIMIT + 1)
    context = {
        "tasks": rows[:LIST_LIMIT],
        "more": len(rows) > LIST_LIMIT,
        "search": text,
        "error": error,
        "new_name": name,
        "new_url": url,
    }
    return render(request, "tasks.html", context, status=status)


@api.get(
    HOME,
    "The console: the task list",
    query={SEARCH_FIELD: "text in a task's name or id"},
    content_types=_HTML,
)
async def task_list(request: web.Request) -> web.Response:
    return await _list_page(request)


async def _save_new(request: web.Request, body: JsonObject) -> JsonObject:
    """Validate and store ``body`` as a new task, as ``POST /api/tasks`` does."""
    task = validate_task(body)
    task_id = f"task_{now_ms()}"
    saved = await task_store.save_task(
        request.app[POOL], task_id, {**body, **task.dump()}, snapshot=False
    )
    log.info("task.saved", task_id=task_id, via="console")
    return saved


def _back_to_list(highlight: str) -> web.Response:
    return see_other(f"{HOME}?{urlencode({SEARCH_FIELD: highlight})}")


@api.post(
    "/console/tasks",
    "Create a task from the console's form (name, url)",
    responses={**_FORM_ANSWERS, 400: None},
    content_types={400: "text/html"},
)
async def create_task(request: web.Request) -> web.Response:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    url = str(form.get("url", "")).strip()
    if not name:
        return await _list_page(request, error="A task needs a name.", status=400, url=url)
    try:
        saved = await _save_new(request, {"name": name, "url": url})
    except (ValidationError, ApiError) as exc:
        details = exc.details if isinstance(exc, ApiError) else describe_validation_error(exc)
        return await _list_page(request, error=details, status=400, name=name, url=url)
    return _back_to_list(str(saved["id"]))


@api.post(
    "/console/tasks/{task_id}/duplicate",
    "Copy a task under a new id (the console's Duplicate)",
    responses={**_FORM_ANSWERS, 404: None},
)
async def duplicate_task(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    original = found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))
    copy = {k: v for k, v in original.items() if k not in _NOT_COPIED}
    copy["name"] = f"{original.get('name') or task_id} (copy)"
    saved = await _save_new(request, copy)
    return _back_to_list(str(saved["id"]))


@api.get(
    "/console/tasks/{task_id}/delete",
    "The console's confirmation before deleting a task",
    responses={200: None, 404: None},
    content_types=_HTML,
)
async def confirm_delete(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    task = found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))
    action = f"/console/tasks/{quote(task_id, safe='')}/delete"
    return render(request, "delete_task.html", {"task": task, "action": action})


@api.post(
    "/console/tasks/{task_id}/delete",
    "Delete a task (the console's confirmed form)",
    responses={**_FORM_ANSWERS, 404: None},
)
async def delete_task(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    if not await task_store.delete_task(request.app[POOL], task_id):
        raise task_not_found(task_id)
    log.info("task.deleted", task_id=task_id, via="console")
    return see_other(HOME)
