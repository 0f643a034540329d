"""Task storage and the synchronous run call."""

from __future__ import annotations

import re
from typing import Any

import structlog
from aiohttp import web

from figranium_common.blocks import BlockStructureError, build_blocks
from figranium_common.models import Task, now_ms
from figranium_gateway import dispatch, store
from figranium_gateway.errors import ApiError, read_json_object
from figranium_gateway.state import JS, POOL, SETTINGS, WAITERS

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


@routes.get("/api/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    return web.json_response(await store.list_tasks(request.app[POOL]))


@routes.get("/api/tasks/list")
async def list_task_summaries(request: web.Request) -> web.Response:
    summaries = []
    for task in await store.list_tasks(request.app[POOL]):
        summary = {"id": task["id"], "name": task.get("name", "")}
        if task.get("description"):
            summary["description"] = task["description"]
        summaries.append(summary)
    return web.json_response(summaries)


@routes.get("/api/tasks/{task_id}")
async def get_task(request: web.Request) -> web.Response:
    task = await store.get_task(request.app[POOL], request.match_info["task_id"])
    if task is None:
        raise ApiError(404, "TASK_NOT_FOUND", f"no task {request.match_info['task_id']!r}")
    return web.json_response(task)


@routes.post("/api/tasks")
async def save_task(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    body.pop("apiKey", None)
    body.pop("key", None)
    task = Task.model_validate(body)  # refuses wrong types before anything is written
    try:
        build_blocks(task.actions)
    except BlockStructureError as exc:
        raise ApiError(400, "INVALID_BODY", exc.details, actionIndex=exc.index) from None
    task_id = task.id or f"task_{now_ms()}"
    stored = {**body, **task.dump()}
    saved = await store.save_task(
        request.app[POOL], task_id, stored, snapshot=_truthy(request.query.get("version"))
    )
    log.info("task.saved", task_id=task_id)
    return web.json_response(saved)


def _run_body(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    variables = body.get("variables", {})
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise ApiError(400, "INVALID_BODY", "variables must be an object of name: value")
    run_id = body.get("runId")
    if run_id is not None and (not isinstance(run_id, str) or not _RUN_ID.match(run_id)):
        raise ApiError(400, "INVALID_BODY", "runId must be 1-200 letters, digits, _ . : or -")
    return variables, run_id


@routes.post("/api/tasks/{task_id}/api")
@routes.post("/tasks/{task_id}/api")
async def run_task(request: web.Request) -> web.Response:
    app = request.app
    pool = app[POOL]
    body = await read_json_object(request)
    variables, run_id = _run_body(body)
    task = await store.get_task(pool, request.match_info["task_id"])
    if task is None:
        raise ApiError(404, "TASK_NOT_FOUND", f"no task {request.match_info['task_id']!r}")
    if body.get("statelessExecution") is not None:
        # Kept in the snapshot, so whatever re-publishes this run later runs it the same way.
        task["statelessExecution"] = bool(body["statelessExecution"])
    execution_id = run_id or dispatch.new_execution_id()
    created = await store.create_execution(
        pool,
        execution_id=execution_id,
        task=task,
        variables=variables,
        source="api",
        method=request.method,
        path=request.path,
    )
    if not created:
        raise ApiError(409, "RUN_ID_TAKEN", f"an execution {execution_id!r} already exists")
    timeout = app[SETTINGS].run_timeout_seconds
    with structlog.contextvars.bound_contextvars(execution_id=execution_id, task_id=task["id"]):
        run = await dispatch.build_run_request(
            pool,
            execution_id=execution_id,
            task=task,
            variables=variables,
            source="api",
            timeout_seconds=timeout,
        )
        try:
            await dispatch.publish_run(app[JS], run)
        except Exception as exc:
            log.error("run.publish_failed", error=str(exc))
            raise ApiError(
                503,
                "QUEUE_UNAVAILABLE",
                "the run is saved as queued and will be published again shortly",
                executionId=execution_id,
            ) from exc
        log.info("run.queued")
        # A little longer than the run may take, so the runner's own timeout answers first.
        wait = timeout + min(15.0, timeout)
        execution = await dispatch.wait_finished(pool, app[WAITERS], execution_id, wait)
    if execution is None:
        raise ApiError(
            504,
            "RUN_TIMEOUT",
            f"no result within {timeout:g} s; the run goes on, follow it at"
            f" /api/executions/{execution_id}",
            executionId=execution_id,
        )
    return _run_answer(execution)


def _run_answer(execution: dict[str, Any]) -> web.Response:
    result: dict[str, Any] = dict(execution.get("result") or {})
    outcome = execution.get("outcome") or result.get("outcome")
    answer = {**result, "executionId": execution["id"], "outcome": outcome}
    status = execution.get("status") or 500
    if status >= 400:
        code = "RUN_CRASHED" if outcome == "crashed" else "RUN_FAILED"
        details = result.get("error") or f"the run ended with outcome {outcome}"
        return web.json_response({**answer, "error": code, "details": details}, status=status)
    return web.json_response(answer, status=status)
