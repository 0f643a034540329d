"""AI help on a task's page: a selector for an element, or an extraction script, asked of
the same functions as ``POST /api/tasks/generate-selector`` and ``generate-script``; a
script can be stored as the task's ``extractionScript`` through the save of
``POST /api/tasks`` (``save_whole``)."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiMapping
from pydantic import ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.console.task_context import (
    HTML,
    refusal,
    stored_task,
    tab_context,
    task_url,
)
from figranium_gateway.errors import ApiError
from figranium_gateway.routes.generate import propose_selector, write_script
from figranium_gateway.routes.tasks import save_whole
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL

api = Router("console")

FormValues = dict[str, str]
_FIELDS = ("kind", "description", "url", "actionIndex", "script")


async def _page(
    request: web.Request,
    values: FormValues | None = None,
    *,
    answer: FormValues | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    task = await stored_task(request)
    given = values or dict.fromkeys(_FIELDS, "")
    context = {
        **await tab_context(request, task, "generate"),
        "values": {**given, "url": given["url"] or str(task.get("url") or "")},
        "answer": answer,
        "error": error,
        "action": task_url(str(task["id"]), "/generate"),
    }
    return render(request, "task_generate.html", context, status=status)


@api.get(
    "/console/tasks/{task_id}/generate",
    "The console's AI help for a task: a selector or an extraction script",
    responses={200: None, 404: None},
    content_types=HTML,
)
async def generate_page(request: web.Request) -> web.Response:
    return await _page(request)


def _index(text: str) -> int:
    try:
        return int(text or "0")
    except ValueError:
        raise ApiError(400, "INVALID_BODY", "Before action: a whole number") from None


async def _answer(app: web.Application, task: JsonObject, values: FormValues) -> FormValues:
    if values["kind"] == "selector":
        url = values["url"].strip() or task.get("url")
        body: JsonObject = {
            "task": {**task, "url": url},
            "actionIndex": _index(values["actionIndex"]),
            "prompt": values["description"],
        }
        selector = await propose_selector(app, body)
        return {"kind": "selector", "text": selector.selector, "provider": selector.provider}
    script = await write_script(app, {"description": values["description"]})
    return {"kind": "script", "text": script.script, "provider": script.provider}


def _values(form: MultiMapping[object]) -> FormValues:
    return {name: str(form.get(name, "")) for name in _FIELDS}


@api.post(
    "/console/tasks/{task_id}/generate",
    "Ask the AI providers for a selector (kind=selector) or a script (kind=script)",
    responses={200: None, 400: None, 403: None, 404: None, 500: None, 502: None, 503: None},
    content_types={200: "text/html", 400: "text/html"},
)
async def generate(request: web.Request) -> web.Response:
    task = await stored_task(request)
    values = _values(await request.post())
    try:
        answer = await _answer(request.app, task, values)
    except (ApiError, ValidationError) as exc:
        status = exc.status if isinstance(exc, ApiError) else 400
        return await _page(request, values, error=refusal(exc), status=status)
    return await _page(request, values, answer=answer)


@api.post(
    "/console/tasks/{task_id}/generate/script",
    "Store a script as the task's extractionScript (a new version) and open the task",
    responses={303: None, 400: None, 403: None, 404: None},
    content_types={400: "text/html"},
)
async def add_script(request: web.Request) -> web.Response:
    task = await stored_task(request)
    values = _values(await request.post())
    if not values["script"].strip():
        return await _page(request, values, error="There is no script to add.", status=400)
    task_id = str(task["id"])
    await save_whole(
        request.app[POOL], {**task, "extractionScript": values["script"]}, snapshot=True
    )
    return see_other(task_url(task_id))
