"""Tasks: storage, partial updates, versions and rollback."""

from __future__ import annotations

from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from figranium_common.blocks import BlockStructureError, build_blocks
from figranium_common.models import Task, now_ms
from figranium_common.redact import mask_task
from figranium_gateway import task_store
from figranium_gateway.errors import ApiError, read_json_object
from figranium_gateway.openapi import ErrorBody, documented
from figranium_gateway.state import POOL

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

_NOT_FOUND = {404: ErrorBody}


class TaskSummary(BaseModel):
    id: str
    name: str
    description: str | None = None


class TaskList(BaseModel):
    tasks: list[TaskSummary]


class TaskOut(Task):
    """A stored task: what was saved, plus ``id`` and ``updatedAt`` (epoch ms)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    updatedAt: int | None = None


class PatchAnswer(BaseModel):
    id: str
    updatedAt: int
    status: str
    task: TaskOut


class DeleteAnswer(BaseModel):
    id: str
    deleted: bool
    message: str


class VersionSummary(BaseModel):
    id: str
    timestamp: int
    name: str | None = None
    mode: str | None = None


class VersionList(BaseModel):
    versions: list[VersionSummary]


class VersionMetadata(BaseModel):
    id: str
    timestamp: int


class VersionDetail(BaseModel):
    snapshot: dict[str, Any]
    metadata: VersionMetadata


class Success(BaseModel):
    success: bool
    versionId: str | None = None
    removed: int | None = None


class RollbackBody(BaseModel):
    versionId: str


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _task_id(request: web.Request) -> str:
    return request.match_info["task_id"]


def _missing(task_id: str) -> ApiError:
    return ApiError(404, "TASK_NOT_FOUND", f"no task {task_id!r}")


class TaskOutput(BaseModel):
    """A task's ``output``: where a successful run's data goes. Only checked: the task keeps
    the object as given, unknown fields included. Figranium's editor saves the output while
    it is being set up (``credentialId`` and ``tableId`` still empty), so empty is allowed
    here; such a target fails at run time, as ``onError`` says."""

    model_config = ConfigDict(extra="allow")
    provider: Literal["baserow"]
    credentialId: str
    tableId: str
    databaseId: str | None = None
    onError: Literal["fail", "ignore"] | None = None

    @field_validator("tableId", "databaseId", mode="before")
    @classmethod
    def _baserow_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        digits = isinstance(value, str) and value.isascii() and value.isdigit()
        if value is None or value == "" or digits:
            return value  # None: no databaseId is fine, and tableId's type refuses it
        raise ValueError("must be a Baserow id: digits, as a string or a number")


class _OutputOnly(BaseModel):
    output: TaskOutput | None = None


def validate_task(body: dict[str, Any]) -> Task:
    """Types first, then the block structure: nothing invalid is ever written."""
    task = Task.model_validate(body)
    _OutputOnly.model_validate({"output": body.get("output")})
    try:
        build_blocks(task.actions)
    except BlockStructureError as exc:
        raise ApiError(400, "INVALID_BODY", exc.details, actionIndex=exc.index) from None
    return task


def _without_credentials(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("apiKey", "key")}


@documented("GET", "/api/tasks", "All tasks", tag="tasks", responses={200: None})
@routes.get("/api/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    tasks = await task_store.list_tasks(request.app[POOL])
    return web.json_response([mask_task(task) for task in tasks])


@documented("GET", "/api/tasks/list", "Task summaries", tag="tasks", responses={200: TaskList})
@routes.get("/api/tasks/list")
async def list_task_summaries(request: web.Request) -> web.Response:
    summaries = []
    for task in await task_store.list_task_summaries(request.app[POOL]):
        summary = {"id": task["id"], "name": task["name"] or task["id"]}
        if task["description"]:
            summary["description"] = task["description"]
        summaries.append(summary)
    return web.json_response({"tasks": summaries})


@documented(
    "GET", "/api/tasks/{task_id}", "One task", tag="tasks", responses={200: TaskOut, **_NOT_FOUND}
)
@routes.get("/api/tasks/{task_id}")
async def get_task(request: web.Request) -> web.Response:
    task = await task_store.get_task(request.app[POOL], _task_id(request))
    if task is None:
        raise _missing(_task_id(request))
    return web.json_response(mask_task(task))


@documented(
    "POST",
    "/api/tasks",
    "Create or overwrite a task",
    tag="tasks",
    body=Task,
    responses={200: TaskOut, 400: ErrorBody, **_NOT_FOUND},
    query={
        "version": "true: keep the previous state as a version first",
        "update": "true: only overwrite an existing task (404 otherwise)",
    },
)
@routes.post("/api/tasks")
async def save_task(request: web.Request) -> web.Response:
    body = _without_credentials(await read_json_object(request))
    task = validate_task(body)
    task_id = task.id or f"task_{now_ms()}"
    pool = request.app[POOL]
    if _truthy(request.query.get("update")) and await task_store.get_task(pool, task_id) is None:
        raise _missing(task_id)
    stored = {**body, **task.dump()}
    saved = await task_store.save_task(
        pool, task_id, stored, snapshot=_truthy(request.query.get("version"))
    )
    log.info("task.saved", task_id=task_id)
    return web.json_response(mask_task(saved))


@documented(
    "PATCH",
    "/api/tasks/{task_id}",
    "Change some fields of a task (the previous state becomes a version)",
    tag="tasks",
    body=Task,
    responses={200: PatchAnswer, 400: ErrorBody, **_NOT_FOUND},
)
@routes.patch("/api/tasks/{task_id}")
async def patch_task(request: web.Request) -> web.Response:
    changes = _without_credentials(await read_json_object(request))

    def merge(current: dict[str, Any]) -> dict[str, Any]:
        merged = {**current, **{k: v for k, v in changes.items() if k not in ("id", "versions")}}
        merged["last_opened"] = now_ms()
        validate_task({**merged, "id": _task_id(request)})
        return merged

    updated = await task_store.update_task(request.app[POOL], _task_id(request), merge)
    if updated is None:
        raise _missing(_task_id(request))
    answer = {"id": updated["id"], "updatedAt": updated["updatedAt"], "status": "success"}
    return web.json_response({**answer, "task": mask_task(updated)})


@documented(
    "DELETE",
    "/api/tasks/{task_id}",
    "Delete a task",
    tag="tasks",
    responses={200: DeleteAnswer, **_NOT_FOUND},
)
@routes.delete("/api/tasks/{task_id}")
async def delete_task(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    if not await task_store.delete_task(request.app[POOL], task_id):
        raise _missing(task_id)
    log.info("task.deleted", task_id=task_id)
    return web.json_response({"id": task_id, "deleted": True, "message": "Task removed."})


@documented(
    "POST",
    "/api/tasks/{task_id}/touch",
    "Mark a task as just opened (last_opened)",
    tag="tasks",
    responses={200: TaskOut, **_NOT_FOUND},
)
@routes.post("/api/tasks/{task_id}/touch")
async def touch_task(request: web.Request) -> web.Response:
    task = await task_store.touch_task(request.app[POOL], _task_id(request))
    if task is None:
        raise _missing(_task_id(request))
    return web.json_response(mask_task(task))


async def _existing(request: web.Request) -> dict[str, Any]:
    task = await task_store.get_task(request.app[POOL], _task_id(request))
    if task is None:
        raise _missing(_task_id(request))
    return task


@documented(
    "GET",
    "/api/tasks/{task_id}/versions",
    "A task's versions, newest first (at most 30)",
    tag="versions",
    responses={200: VersionList, **_NOT_FOUND},
)
@routes.get("/api/tasks/{task_id}/versions")
async def list_versions(request: web.Request) -> web.Response:
    task = await _existing(request)
    versions = await task_store.list_versions(request.app[POOL], task["id"])
    summaries = [
        {
            "id": v["id"],
            "timestamp": v["timestamp"],
            "name": v["snapshot"].get("name") or task.get("name"),
            "mode": v["snapshot"].get("mode") or task.get("mode", "agent"),
        }
        for v in versions
    ]
    return web.json_response({"versions": summaries})


@documented(
    "POST",
    "/api/tasks/{task_id}/versions/clear",
    "Delete all versions of a task",
    tag="versions",
    responses={200: Success, **_NOT_FOUND},
)
@routes.post("/api/tasks/{task_id}/versions/clear")
async def clear_versions(request: web.Request) -> web.Response:
    task = await _existing(request)
    removed = await task_store.clear_versions(request.app[POOL], task["id"])
    return web.json_response({"success": True, "removed": removed})


@documented(
    "GET",
    "/api/tasks/{task_id}/versions/{version_id}",
    "One version of a task",
    tag="versions",
    responses={200: VersionDetail, **_NOT_FOUND},
)
@routes.get("/api/tasks/{task_id}/versions/{version_id}")
async def get_version(request: web.Request) -> web.Response:
    task = await _existing(request)
    version_id = request.match_info["version_id"]
    version = await task_store.get_version(request.app[POOL], task["id"], version_id)
    if version is None:
        raise ApiError(404, "VERSION_NOT_FOUND", f"task {task['id']!r} has no {version_id!r}")
    metadata = {"id": version["id"], "timestamp": version["timestamp"]}
    return web.json_response({"snapshot": mask_task(version["snapshot"]), "metadata": metadata})


@documented(
    "DELETE",
    "/api/tasks/{task_id}/versions/{version_id}",
    "Delete one version",
    tag="versions",
    responses={200: Success, **_NOT_FOUND},
)
@routes.delete("/api/tasks/{task_id}/versions/{version_id}")
async def delete_version(request: web.Request) -> web.Response:
    task = await _existing(request)
    version_id = request.match_info["version_id"]
    if not await task_store.delete_version(request.app[POOL], task["id"], version_id):
        raise ApiError(404, "VERSION_NOT_FOUND", f"task {task['id']!r} has no {version_id!r}")
    return web.json_response({"success": True, "versionId": version_id})


@documented(
    "POST",
    "/api/tasks/{task_id}/rollback",
    "Restore a version (the current state becomes a version first)",
    tag="versions",
    body=RollbackBody,
    responses={200: TaskOut, 400: ErrorBody, **_NOT_FOUND},
)
@routes.post("/api/tasks/{task_id}/rollback")
async def rollback(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    if not body.get("versionId"):
        raise ApiError(400, "MISSING_VERSION_ID", 'send {"versionId": "ver_..."}')
    try:
        version_id = RollbackBody.model_validate(body).versionId
    except ValidationError as exc:
        raise ApiError(400, "INVALID_BODY", "versionId must be a string") from exc
    task = await _existing(request)
    version = await task_store.get_version(request.app[POOL], task["id"], version_id)
    if version is None:
        raise ApiError(404, "VERSION_NOT_FOUND", f"task {task['id']!r} has no {version_id!r}")
    snapshot: dict[str, Any] = dict(version["snapshot"])

    def restore(current: dict[str, Any]) -> dict[str, Any]:
        return {**snapshot, "last_opened": now_ms()}

    restored = await task_store.update_task(request.app[POOL], task["id"], restore)
    if restored is None:
        raise _missing(task["id"])
    log.info("task.rolled_back", task_id=task["id"], version=version_id)
    return web.json_response(mask_task(restored))
