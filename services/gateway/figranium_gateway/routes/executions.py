"""Execution history."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from figranium_common.jsontypes import GivenObject, JsonObject
from figranium_common.redact import mask_run_variables, mask_task
from figranium_gateway import changes, retention
from figranium_gateway.errors import ApiError, found
from figranium_gateway.execution_page import DEFAULT_LIMIT
from figranium_gateway.execution_query import MAX_LIMIT, OUTCOMES, encode_cursor, parse_query
from figranium_gateway.routing import RouteOptions, Router
from figranium_gateway.state import JS, NC, POOL
from figranium_gateway.store import executions as execution_store
from figranium_gateway.store import results as result_store

api = Router("executions")


class ExecutionSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    timestamp: int | None
    method: str | None
    path: str | None
    status: int | None
    durationMs: int | None
    source: str
    mode: str
    taskId: str | None
    taskName: str | None
    url: str | None
    phase: str
    outcome: str | None
    startedAt: int | None
    finishedAt: int | None
    attempts: int


class ExecutionList(BaseModel):
    executions: list[ExecutionSummary]
    nextCursor: str | None = Field(
        default=None, description="present when more rows follow: pass it as ?cursor="
    )


class WebhookState(BaseModel):
    """The delivery of the run's result to its ``webhookUrl`` (epoch ms times)."""

    state: Literal["pending", "delivered", "failed"]
    attempts: int
    lastStatus: int | None
    lastError: str | None
    deliveredAt: int | None
    nextAttemptAt: int | None


class ExecutionDetail(ExecutionSummary):
    taskSnapshot: GivenObject
    variables: GivenObject
    result: GivenObject | None
    logs: list[str]
    webhook: WebhookState | None = Field(
        default=None, description="only for runs that asked for a webhook"
    )


class ExecutionAnswer(BaseModel):
    execution: ExecutionDetail


class Cleared(BaseModel):
    success: bool
    removed: int | None = None
    capturesRemoved: int | None = None


_LISTING: RouteOptions = {
    "query": {
        "limit": f"how many, newest first (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})",
        "status": "only those whose phase, outcome or HTTP status is this",
        "taskId": "only this task's",
        "outcome": f"only those finished with this outcome ({', '.join(OUTCOMES)})",
        "from": "created at or after (epoch ms or ISO 8601)",
        "to": "created before (epoch ms or ISO 8601)",
        "cursor": "continue after the page that answered this nextCursor",
    },
    "responses": {200: ExecutionList, 400: None},
}


def _execution_id(request: web.Request) -> str:
    return request.match_info["execution_id"]


def _missing(execution_id: str) -> ApiError:
    return ApiError(404, "EXECUTION_NOT_FOUND", f"no execution {execution_id!r}")


@api.get("/api/executions", "Recent executions", **_LISTING)
@api.get("/api/executions/list", "Recent executions (alias)", **_LISTING)
async def list_executions(request: web.Request) -> web.Response:
    executions, after = await execution_store.list_executions(
        request.app[POOL], parse_query(request.query)
    )
    page: JsonObject = {"executions": executions}
    if after is not None:
        page["nextCursor"] = encode_cursor(after)
    return web.json_response(page)


@api.post(
    "/api/executions/clear",
    "Delete every finished execution and its captures",
    responses={200: Cleared},
)
async def clear_executions(request: web.Request) -> web.Response:
    # Read before deleting: clear_executions answers only a count, and the captures of
    # what it deletes must go too. A run finishing in between keeps its captures until
    # the retention job removes them by age.
    finished = await execution_store.finished_ids(request.app[POOL])
    removed = await execution_store.clear_executions(request.app[POOL])
    captures = await retention.delete_captures_logged(request.app[POOL], request.app[JS], finished)
    await changes.notify(request.app[NC])
    return web.json_response({"success": True, "removed": removed, "capturesRemoved": captures})


@api.get(
    "/api/executions/{execution_id}",
    "One execution with its result and logs",
    responses={200: ExecutionAnswer, 404: None},
)
async def get_execution(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    execution = found(
        await execution_store.get_execution(request.app[POOL], execution_id), _missing(execution_id)
    )
    # The stored snapshot keeps the secrets, so a run published again still has them.
    snapshot = execution["taskSnapshot"]
    execution["variables"] = mask_run_variables(snapshot, execution["variables"])
    execution["taskSnapshot"] = mask_task(snapshot)
    return web.json_response({"execution": execution})


class FullResult(BaseModel):
    result: GivenObject


@api.get(
    "/api/executions/{execution_id}/result",
    "An execution's whole result, also when the execution shows a preview (hasFullResult)",
    responses={200: FullResult, 404: None},
)
async def get_full_result(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    exists, result = await result_store.full_result(request.app[POOL], execution_id)
    if not exists:
        raise _missing(execution_id)
    if result is None:
        raise ApiError(
            404, "FULL_RESULT_NOT_AVAILABLE", f"execution {execution_id!r} has not finished"
        )
    return web.json_response({"result": result})


@api.delete(
    "/api/executions/{execution_id}",
    "Delete an execution and its captures",
    responses={200: Cleared, 404: None},
)
async def delete_execution(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    if not await execution_store.delete_execution(request.app[POOL], execution_id):
        raise _missing(execution_id)
    captures = await retention.delete_captures_logged(
        request.app[POOL], request.app[JS], [execution_id]
    )
    await changes.notify(request.app[NC])
    return web.json_response({"success": True, "capturesRemoved": captures})
