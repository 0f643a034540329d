"""Execution history."""

from __future__ import annotations

from aiohttp import web

from figranium_gateway import store
from figranium_gateway.errors import ApiError
from figranium_gateway.state import POOL

routes = web.RouteTableDef()

MAX_LIMIT = 1000


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "INVALID_QUERY", f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, "INVALID_QUERY", f"limit must be between 1 and {MAX_LIMIT}")
    return value


@routes.get("/api/executions")
@routes.get("/api/executions/list")
async def list_executions(request: web.Request) -> web.Response:
    executions = await store.list_executions(
        request.app[POOL],
        limit=_limit(request.query.get("limit")),
        status=request.query.get("status") or None,
    )
    return web.json_response({"executions": executions})


@routes.post("/api/executions/clear")
async def clear_executions(request: web.Request) -> web.Response:
    removed = await store.clear_executions(request.app[POOL])
    return web.json_response({"success": True, "removed": removed})


@routes.get("/api/executions/{execution_id}")
async def get_execution(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    execution = await store.get_execution(request.app[POOL], execution_id)
    if execution is None:
        raise ApiError(404, "EXECUTION_NOT_FOUND", f"no execution {execution_id!r}")
    return web.json_response({"execution": execution})


@routes.delete("/api/executions/{execution_id}")
async def delete_execution(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    if not await store.delete_execution(request.app[POOL], execution_id):
        raise ApiError(404, "EXECUTION_NOT_FOUND", f"no execution {execution_id!r}")
    return web.json_response({"success": True})
