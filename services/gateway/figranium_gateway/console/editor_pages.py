"""The console's task editor (``/console/tasks/{id}``): the task's fields, its actions as
an ordered list drawn from the action palette, its variables, extraction and behaviour.

It works without script: each submit button of the form carries an operation (``op``):
``save`` stores the task, ``add``, ``up:i``, ``down:i`` and ``remove:i`` answer the page
again with the edited, unsaved state. A save merges the form onto the stored task (fields
the editor does not show are kept) and goes through the API's own validation and the
store's update, as ``PATCH /api/tasks/{id}`` does: the previous state becomes a version
and a secret variable sent back masked keeps its stored value.
"""

from __future__ import annotations

from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import ValidationError

from figranium_common.action_palette import ACTION_PALETTE
from figranium_common.jsontypes import JsonObject
from figranium_common.models import now_ms
from figranium_common.redact import mask_task
from figranium_gateway.console import editor_form as forms
from figranium_gateway.console.editor_view import (
    Problems,
    action_views,
    stealth_switches,
    switches,
    type_choices,
    variable_views,
)
from figranium_gateway.console.rendering import missing, render, see_other
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import task_id_of
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import tasks as task_store
from figranium_gateway.validation import validate_task

log = structlog.get_logger(__name__)
api = Router("console")

PATH = "/console/tasks/{task_id}"
PALETTE_JSON = ACTION_PALETTE.model_dump_json()
_PAGES = {200: "text/html", 400: "text/html", 404: "text/html"}


def _editor_url(task_id: str) -> str:
    return "/console/tasks/" + quote(task_id, safe="")


def _page(
    request: web.Request,
    stored: JsonObject,
    shown: JsonObject,
    *,
    problems: Problems | None = None,
    status: int = 200,
) -> web.Response:
    """The editor showing ``shown`` (the stored task, masked, or an edited state)."""
    problems = problems or Problems()
    given = shown.get("actions")
    actions = [a for a in given if isinstance(a, dict)] if isinstance(given, list) else []
    variables = shown.get("variables")
    context = {
        "task": stored,
        "tab": "editor",
        "form": shown,
        "action": _editor_url(str(stored["id"])),
        "actions": action_views(actions, problems),
        "variables": variable_views(variables if isinstance(variables, dict) else {}),
        "problems": problems,
        "choices": type_choices(),
        "switches": switches(shown),
        "stealth": stealth_switches(shown),
        "variable_types": forms.VARIABLE_TYPES,
        "palette": PALETTE_JSON,
        "saved": request.query.get("saved") == "1" and status == 200,
    }
    return render(request, "editor.html", context, status=status)


async def _stored(request: web.Request) -> JsonObject | None:
    return await task_store.get_task(request.app[POOL], task_id_of(request))


def _missing(request: web.Request) -> web.Response:
    return missing(request, "tasks", task_id_of(request))


@api.get(
    PATH,
    "The console's task editor",
    responses={200: None, 404: None},
    content_types=_PAGES,
)
async def editor(request: web.Request) -> web.Response:
    stored = await _stored(request)
    if stored is None:
        return _missing(request)
    masked = mask_task(stored)
    assert isinstance(masked, dict)
    return _page(request, stored, masked)


async def _save(request: web.Request, changes: JsonObject) -> None:
    """Merge ``changes`` onto the stored task, validated, keeping a version (as PATCH)."""
    task_id = task_id_of(request)

    def merge(current: JsonObject) -> JsonObject:
        merged = {**current, **changes, "last_opened": now_ms()}
        validate_task({**merged, "id": task_id})
        return merged

    if await task_store.update_task(request.app[POOL], task_id, merge) is None:
        raise ApiError(404, "TASK_NOT_FOUND", f"no task {task_id!r}")
    log.info("task.saved", task_id=task_id, via="console editor")


@api.post(
    PATH,
    "Save the console editor's form, or apply one edit (op: save, add, up:i, down:i, remove:i)",
    responses={200: None, 303: None, 400: None, 403: None, 404: None},
    content_types=_PAGES,
)
async def edit(request: web.Request) -> web.Response:
    stored = await _stored(request)
    if stored is None:
        return _missing(request)
    posted = await request.post()
    form = {k: v for k, v in posted.items() if isinstance(v, str)}
    changes = forms.read_task(form, stored)
    op = form.get("op", "save")
    edited = {**stored, **changes}
    if op != "save":
        actions = list(changes["actions"]) if isinstance(changes["actions"], list) else []
        typed = [a for a in actions if isinstance(a, dict)]
        if not forms.apply_op(op, typed, form.get("add-type", "")):
            problems = Problems(general=[f"Unknown operation {op!r}."])
            return _page(request, stored, edited, problems=problems, status=400)
        return _page(request, stored, {**edited, "actions": typed})
    try:
        await _save(request, changes)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status == 404:
            return _missing(request)
        return _page(request, stored, edited, problems=Problems.of(exc), status=400)
    return see_other(_editor_url(str(stored["id"])) + "?saved=1")
