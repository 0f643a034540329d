"""What every page of one task shares: the stored task (or the 404), its URLs, the tab
bar's "Generate" entry, and a refusal written for a person."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_gateway.errors import ApiError, describe_validation_error, found
from figranium_gateway.request_input import task_id_of, task_not_found
from figranium_gateway.state import AI, POOL
from figranium_gateway.store import tasks as task_store

HTML = {200: "text/html"}


def task_url(task_id: str, tail: str = "") -> str:
    """``/console/tasks/{id}`` (the editor), or one of its pages with ``tail``."""
    return f"/console/tasks/{quote(task_id, safe='')}{tail}"


async def stored_task(request: web.Request) -> JsonObject:
    """The task the route names, as stored (secrets included); 404 ``TASK_NOT_FOUND``."""
    task_id = task_id_of(request)
    return found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))


async def ai_configured(app: web.Application) -> bool:
    """Whether an AI provider is set up, so the task's pages offer "Generate"."""
    return (await app[AI].keyring()).configured


async def tab_context(request: web.Request, task: JsonObject, tab: str) -> dict[str, object]:
    """The context ``task_tabs.html`` needs."""
    return {"task": task, "tab": tab, "ai_configured": await ai_configured(request.app)}


def refusal(exc: ApiError | ValidationError) -> str:
    """Why the API refused a body, naming the action (by its index) when it said which."""
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    index = exc.extra.get("actionIndex")
    return exc.details if index is None else f"Action {index}: {exc.details}"
