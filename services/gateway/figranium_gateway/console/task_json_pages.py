"""A task as JSON: shown as ``GET /api/tasks/:id`` shows it (secret values masked) and
saved back through the save of ``POST /api/tasks`` (``save_whole``), so a mask sent back
keeps the stored secret and nothing the API would refuse is stored."""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_common.redact import mask_task
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.console.task_context import (
    HTML,
    refusal,
    stored_task,
    tab_context,
    task_url,
)
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import parse_json_object, task_id_of
from figranium_gateway.routes.tasks import save_whole
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL

api = Router("console")

FIELD = "json"


def shown_json(task: JsonObject) -> str:
    """``task`` as the API shows it, indented."""
    return json.dumps(mask_task(task), indent=2, ensure_ascii=False)


async def _page(
    request: web.Request, text: str | None = None, *, error: str | None = None, status: int = 200
) -> web.Response:
    task = await stored_task(request)
    context = {
        **await tab_context(request, task, "json"),
        "text": shown_json(task) if text is None else text,
        "field": FIELD,
        "error": error,
        "action": task_url(str(task["id"]), "/json"),
    }
    return render(request, "task_json.html", context, status=status)


@api.get(
    "/console/tasks/{task_id}/json",
    "The console's JSON view of a task (secret values masked)",
    responses={200: None, 404: None},
    content_types=HTML,
)
async def task_json(request: web.Request) -> web.Response:
    return await _page(request)


@api.post(
    "/console/tasks/{task_id}/json",
    "Save a task from the console's JSON view (as POST /api/tasks saves it; a new version)",
    responses={303: None, 400: None, 403: None, 404: None},
    content_types={400: "text/html"},
)
async def save_task_json(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    await stored_task(request)
    text = str((await request.post()).get(FIELD, ""))
    try:
        if not text.strip():
            raise ApiError(400, "INVALID_BODY", "Give the task as a JSON object.")
        body = parse_json_object(text.encode())
        await save_whole(
            request.app[POOL], {**body, "id": task_id}, snapshot=True, update_only=True
        )
    except (ApiError, ValidationError) as exc:
        return await _page(request, text, error=refusal(exc), status=400)
    return see_other(task_url(task_id, "/json"))
