"""Tasks: storage, partial updates, versions and rollback."""

from __future__ import annotations

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from figranium_common.db import Pool
from figranium_common.jsontypes import GivenObject, JsonObject
from figranium_common.models import Task, now_ms
from figranium_common.redact import mask_task
from figranium_gateway.errors import ApiError, found
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import (
    read_json_object,
    task_id_of,
    task_not_found,
    without_credentials,
)
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import tasks as task_store
from figranium_gateway.validation import validate_task

log = structlog.get_logger(__name__)
api = Router("tasks")

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
    snapshot: GivenObject
    metadata: VersionMetadata


class Success(BaseModel):
    success: bool
    versionId: str | None = None
    removed: int | None = None


class RollbackBody(BaseModel):
    versionId: str


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _version_missing(task_id: str, version_id: str) -> ApiError:
    return ApiError(404, "VERSION_NOT_FOUND", f"task {task_id!r} has no {version_id!r}")


async def _existing(request: web.Request) -> JsonObject:
    task_id = task_id_of(request)
    return found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))


async def _version_of(request: web.Request) -> tuple[str, str]:
    """The task id and version id a version route names, once the task is known to exist."""
    await _existing(request)
    return task_id_of(request), request.match_info["version_id"]


async def stored_version(pool: Pool, task_id: str, version_id: str) -> task_store.TaskVersion:
    """The version, or the 404 ``VERSION_NOT_FOUND``."""
    version = await task_store.get_version(pool, task_id, version_id)
    return found(version, _version_missing(task_id, version_id))


@api.get("/api/tasks", "All tasks", responses={200: None})
async def list_tasks(request: web.Request) -> web.Response:
    tasks = await task_store.list_tasks(request.app[POOL])
    return web.json_response([mask_task(task) for task in tasks])


@api.get("/api/tasks/list", "Task summaries", responses={200: TaskList})
async def list_task_summaries(request: web.Request) -> web.Response:
    summaries = []
    for task in await task_store.list_task_summaries(request.app[POOL]):
        summary = {"id": task["id"], "name": task["name"] or task["id"]}
        if task["description"]:
            summary["description"] = task["description"]
        summaries.append(summary)
    return web.json_response({"tasks": summaries})


@api.get("/api/tasks/{task_id}", "One task", responses={200: TaskOut, **_NOT_FOUND})
async def get_task(request: web.Request) -> web.Response:
    return web.json_response(mask_task(await _existing(request)))


@api.post(
    "/api/tasks",
    "Create or overwrite a task",
    body=Task,
    responses={200: TaskOut, 400: ErrorBody, **_NOT_FOUND},
    query={
        "version": "true: keep the previous state as a version first",
        "update": "true: only overwrite an existing task (404 otherwise)",
    },
)
async def save_task(request: web.Request) -> web.Response:
    saved = await save_whole(
        request.app[POOL],
        await read_json_object(request),
        snapshot=_truthy(request.query.get("version")),
        update_only=_truthy(request.query.get("update")),
    )
    return web.json_response(mask_task(saved))


async def save_whole(
    pool: Pool, given: JsonObject, *, snapshot: bool, update_only: bool = False
) -> JsonObject:
    """Validate ``given`` and store it whole under its ``id`` (a new id when it has none),
    as ``POST /api/tasks`` does: credential fields dropped, a masked secret keeping the
    stored value; with ``snapshot`` the previous state becomes a version first, with
    ``update_only`` a task that does not exist yet is refused (404)."""
    body = without_credentials(given)
    task = validate_task(body)
    task_id = task.id or f"task_{now_ms()}"
    if update_only and await task_store.get_task(pool, task_id) is None:
        raise task_not_found(task_id)
    saved = await task_store.save_task(pool, task_id, {**body, **task.dump()}, snapshot=snapshot)
    log.info("task.saved", task_id=task_id)
    return saved


@api.patch(
    "/api/tasks/{task_id}",
    "Change some fields of a task (the previous state becomes a version)",
    body=Task,
    responses={200: PatchAnswer, 400: ErrorBody, **_NOT_FOUND},
)
async def patch_task(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    changes = without_credentials(await read_json_object(request))

    def merge(current: JsonObject) -> JsonObject:
        merged = {**current, **{k: v for k, v in changes.items() if k not in ("id", "versions")}}
        merged["last_opened"] = now_ms()
        validate_task({**merged, "id": task_id})
        return merged

    updated = found(
        await task_store.update_task(request.app[POOL], task_id, merge), task_not_found(task_id)
    )
    answer = {"id": updated["id"], "updatedAt": updated["updatedAt"], "status": "success"}
    return web.json_response({**answer, "task": mask_task(updated)})


@api.delete("/api/tasks/{task_id}", "Delete a task", responses={200: DeleteAnswer, **_NOT_FOUND})
async def delete_task(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    if not await task_store.delete_task(request.app[POOL], task_id):
        raise task_not_found(task_id)
    log.info("task.deleted", task_id=task_id)
    return web.json_response({"id": task_id, "deleted": True, "message": "Task removed."})


@api.post(
    "/api/tasks/{task_id}/touch",
    "Mark a task as just opened (last_opened)",
    responses={200: TaskOut, **_NOT_FOUND},
)
async def touch_task(request: web.Request) -> web.Response:
    task_id = task_id_of(request)
    task = found(await task_store.touch_task(request.app[POOL], task_id), task_not_found(task_id))
    return web.json_response(mask_task(task))


@api.get(
    "/api/tasks/{task_id}/versions",
    "A task's versions, newest first (at most 30)",
    tag="versions",
    responses={200: VersionList, **_NOT_FOUND},
)
async def list_versions(request: web.Request) -> web.Response:
    task = await _existing(request)
    versions = await task_store.list_versions(request.app[POOL], task_id_of(request))
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


@api.post(
    "/api/tasks/{task_id}/versions/clear",
    "Delete all versions of a task",
    tag="versions",
    responses={200: Success, **_NOT_FOUND},
)
async def clear_versions(request: web.Request) -> web.Response:
    await _existing(request)
    removed = await task_store.clear_versions(request.app[POOL], task_id_of(request))
    return web.json_response({"success": True, "removed": removed})


@api.get(
    "/api/tasks/{task_id}/versions/{version_id}",
    "One version of a task",
    tag="versions",
    responses={200: VersionDetail, **_NOT_FOUND},
)
async def get_version(request: web.Request) -> web.Response:
    task_id, version_id = await _version_of(request)
    version = await stored_version(request.app[POOL], task_id, version_id)
    metadata = {"id": version["id"], "timestamp": version["timestamp"]}
    return web.json_response({"snapshot": mask_task(version["snapshot"]), "metadata": metadata})


@api.delete(
    "/api/tasks/{task_id}/versions/{version_id}",
    "Delete one version",
    tag="versions",
    responses={200: Success, **_NOT_FOUND},
)
async def delete_version(request: web.Request) -> web.Response:
    task_id, version_id = await _version_of(request)
    if not await task_store.delete_version(request.app[POOL], task_id, version_id):
        raise _version_missing(task_id, version_id)
    return web.json_response({"success": True, "versionId": version_id})


@api.post(
    "/api/tasks/{task_id}/rollback",
    "Restore a version (the current state becomes a version first)",
    tag="versions",
    body=RollbackBody,
    responses={200: TaskOut, 400: ErrorBody, **_NOT_FOUND},
)
async def rollback(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    if not body.get("versionId"):
        raise ApiError(400, "MISSING_VERSION_ID", 'send {"versionId": "ver_..."}')
    try:
        version_id = RollbackBody.model_validate(body).versionId
    except ValidationError as exc:
        raise ApiError(400, "INVALID_BODY", "versionId must be a string") from exc
    await _existing(request)
    restored = await restore_version(request.app[POOL], task_id_of(request), version_id)
    return web.json_response(mask_task(restored))


async def restore_version(pool: Pool, task_id: str, version_id: str) -> JsonObject:
    """Make version ``version_id`` the task's state, the current state becoming a version
    first (404 when the task or the version does not exist)."""
    version = await stored_version(pool, task_id, version_id)
    snapshot: JsonObject = dict(version["snapshot"])

    def restore(current: JsonObject) -> JsonObject:
        return {**snapshot, "last_opened": now_ms()}

    restored = found(await task_store.update_task(pool, task_id, restore), task_not_found(task_id))
    log.info("task.rolled_back", task_id=task_id, version=version_id)
    return restored
