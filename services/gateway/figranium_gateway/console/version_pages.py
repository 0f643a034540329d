"""A task's versions: the list, a preview of one (masked JSON, a summary and what differs
from the task now), and "Restore this version", which does what
``POST /api/tasks/:id/rollback`` does (``restore_version``)."""

from __future__ import annotations

from aiohttp import web

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_gateway.console.execution_pages import shown_time
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.console.task_context import HTML, stored_task, tab_context, task_url
from figranium_gateway.console.task_json_pages import shown_json
from figranium_gateway.request_input import task_id_of
from figranium_gateway.routes.tasks import restore_version, stored_version
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import tasks as task_store

api = Router("console")

# Fields the store or other pages keep, not part of what a version restores.
_NOT_COMPARED = frozenset({"id", "updatedAt", "versions", "last_opened", "schedule"})


def summary(snapshot: JsonObject) -> dict[str, object]:
    actions = snapshot.get("actions")
    return {
        "name": snapshot.get("name") or "",
        "url": snapshot.get("url") or "",
        "actions": len(actions) if isinstance(actions, list) else 0,
    }


def _count(value: JsonValue) -> str:
    return f"{len(value)} actions" if isinstance(value, list) else "none"


def differences(snapshot: JsonObject, current: JsonObject) -> list[str]:
    """What restoring ``snapshot`` would change in ``current``, one line per field."""
    lines = []
    for name in sorted((set(snapshot) | set(current)) - _NOT_COMPARED):
        then, now = snapshot.get(name), current.get(name)
        if then == now:
            continue
        if name not in current:
            lines.append(f"{name}: only in this version")
        elif name not in snapshot:
            lines.append(f"{name}: only in the task now (restoring removes it)")
        elif name == "actions":
            lines.append(f"actions: {_count(then)} in this version, {_count(now)} now")
        else:
            lines.append(f"{name}: differs")
    return lines


@api.get(
    "/console/tasks/{task_id}/versions",
    "The console's list of a task's versions",
    responses={200: None, 404: None},
    content_types=HTML,
)
async def version_list(request: web.Request) -> web.Response:
    task = await stored_task(request)
    versions = await task_store.list_versions(request.app[POOL], task_id_of(request))
    rows = [
        {"id": v["id"], "time": shown_time(v["timestamp"]), **summary(v["snapshot"])}
        for v in versions
    ]
    context = {
        **await tab_context(request, task, "versions"),
        "versions": rows,
        "base": task_url(str(task["id"]), "/versions"),
    }
    return render(request, "task_versions.html", context)


@api.get(
    "/console/tasks/{task_id}/versions/{version_id}",
    "The console's preview of one version of a task",
    responses={200: None, 404: None},
    content_types=HTML,
)
async def version_preview(request: web.Request) -> web.Response:
    task = await stored_task(request)
    task_id, version_id = str(task["id"]), request.match_info["version_id"]
    version = await stored_version(request.app[POOL], task_id, version_id)
    snapshot = version["snapshot"]
    context = {
        **await tab_context(request, task, "versions"),
        "version": {"id": version["id"], "time": shown_time(version["timestamp"])},
        "summary": summary(snapshot),
        "differences": differences(snapshot, task),
        "json": shown_json(snapshot),
        "list": task_url(task_id, "/versions"),
    }
    return render(request, "task_version.html", context)


@api.post(
    "/console/tasks/{task_id}/versions/{version_id}/rollback",
    "Restore a version from the console (as POST /api/tasks/:id/rollback)",
    responses={303: None, 403: None, 404: None},
)
async def version_rollback(request: web.Request) -> web.Response:
    task = await stored_task(request)
    task_id = str(task["id"])
    await restore_version(request.app[POOL], task_id, request.match_info["version_id"])
    return see_other(task_url(task_id))
