"""The console's executions: the filtered list and one execution's detail page.

The list asks the store exactly what ``GET /api/executions`` asks it (``parse_query``,
``list_executions``, the same keyset cursor), so the console pages as fast as the API and
refuses what the API refuses. Both pages are plain HTML: filters are a GET form, the next
page a link.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import web

from figranium_common.jsontypes import JsonObject
from figranium_gateway.console import result_views
from figranium_gateway.console.rendering import missing, render, see_other
from figranium_gateway.errors import ApiError
from figranium_gateway.execution_query import OUTCOMES, encode_cursor, parse_query, parse_time
from figranium_gateway.routes.captures import listed_captures
from figranium_gateway.routing import Router
from figranium_gateway.served_files import attachment
from figranium_gateway.state import POOL
from figranium_gateway.stopping import request_stop
from figranium_gateway.store import change_log
from figranium_gateway.store import executions as execution_store
from figranium_gateway.store import results as result_store

api = Router("console")

EXECUTIONS = "/console/executions"
PHASES = ("queued", "running", "finished")
# The list's filters, as GET /api/executions names them; ``limit`` too, so that it holds
# on the next pages.
FILTERS = ("taskId", "status", "outcome", "from", "to", "limit")
_CAPTURE_KINDS = frozenset({"screenshot", "recording"})
_PAGE = {200: "text/html", 400: "text/html"}


def detail_url(execution_id: str) -> str:
    return f"{EXECUTIONS}/{quote(execution_id, safe='')}"


def shown_time(epoch_ms: object) -> dict[str, str] | None:
    """A time for ``<time>``: machine-readable ISO 8601 and a readable UTC text."""
    if not isinstance(epoch_ms, int):
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return {"iso": moment.isoformat(), "text": moment.strftime("%Y-%m-%d %H:%M:%S UTC")}


def _duration(duration_ms: object) -> str:
    return f"{duration_ms / 1000:.2f} s" if isinstance(duration_ms, int) else ""


def _row(execution: JsonObject) -> dict[str, object]:
    """What the list shows of an execution."""
    return {
        "id": execution["id"],
        "href": detail_url(str(execution["id"])),
        "phase": execution["phase"],
        "status": execution["status"],
        "outcome": execution["outcome"] or "",
        "task_id": execution["taskId"] or "",
        "task_name": execution["taskName"] or execution["taskId"] or "",
        "created": shown_time(execution["timestamp"]),
        "duration": _duration(execution["durationMs"]),
    }


def _field_time(name: str, raw: str) -> str:
    """A ``from``/``to`` filter as a ``datetime-local`` field shows it (UTC)."""
    try:
        moment = parse_time(name, raw)
    except ApiError:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@api.get(
    EXECUTIONS,
    "The console's executions list, newest first, with the API's filters and cursor",
    query={
        "taskId": "only this task's",
        "status": "only those in this phase (or with this outcome or HTTP status)",
        "outcome": "only those finished with this outcome",
        "from": "created at or after (epoch ms or ISO 8601, UTC)",
        "to": "created before (epoch ms or ISO 8601, UTC)",
        "limit": "rows per page",
        "cursor": "the page after the one whose Next link carried it",
    },
    responses={200: None, 400: None},
    content_types=_PAGE,
)
async def execution_list(request: web.Request) -> web.Response:
    filters = {name: request.query.get(name, "").strip() for name in FILTERS}
    given = {name: value for name, value in filters.items() if value}
    context: dict[str, object] = {
        "filters": filters,
        "field_times": {name: _field_time(name, filters[name]) for name in ("from", "to")},
        "outcomes": OUTCOMES,
        "phases": PHASES,
        "paged": "cursor" in request.query,
        "first_page": f"{EXECUTIONS}?{urlencode(given)}" if given else EXECUTIONS,
        "rows": [],
        "next_page": None,
        "error": None,
    }
    cursor = request.query.get("cursor")
    asked: Mapping[str, str] = given if cursor is None else {**given, "cursor": cursor}
    try:
        query = parse_query(asked)
    except ApiError as exc:
        context["error"] = exc.details
        return render(request, "executions.html", context, status=400)
    rows, after = await execution_store.list_executions(request.app[POOL], query)
    context["rows"] = [_row(row) for row in rows]
    if after is not None:
        context["next_page"] = (
            f"{EXECUTIONS}?{urlencode({**given, 'cursor': encode_cursor(after)})}"
        )
    return render(request, "executions.html", context)


@api.get(
    EXECUTIONS + "/{execution_id}",
    "The console's page of one execution: logs, captures, result, webhook delivery",
    responses={200: None, 404: None},
    content_types={200: "text/html", 404: "text/html"},
)
async def execution_detail(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    # Read before the execution: the live view resumes the stream from here, so a change
    # made after this read is never missed.
    seen = await change_log.latest_change_id(request.app[POOL])
    execution = await execution_store.get_execution(request.app[POOL], execution_id)
    if execution is None:
        return missing(request, "executions", execution_id)
    captures = await listed_captures(request.app[POOL], execution_id, kinds=_CAPTURE_KINDS)
    result = execution["result"]
    rows = result_views.table_rows(result)
    finished = execution["phase"] == "finished"
    context = {
        "execution": _row(execution),
        "url": execution["url"] or "",
        "source": execution["source"],
        "attempts": execution["attempts"],
        "started": shown_time(execution["startedAt"]),
        "finished": shown_time(execution["finishedAt"]),
        "logs": execution["logs"],
        "captures": captures,
        "result": None if result is None else result_views.tree(result),
        "table": None if rows is None else result_views.table(rows),
        "downloads": f"{detail_url(execution_id)}/result",
        "live_after": None if finished else seen,
        "full_result": (
            f"/api/executions/{quote(execution_id, safe='')}/result"
            if isinstance(result, dict) and result.get("hasFullResult") is True
            else None
        ),
        "webhook": _webhook(execution.get("webhook")),
    }
    return render(request, "execution.html", context)


def _webhook(state: object) -> dict[str, object] | None:
    """The webhook delivery's state as the page shows it; None when none was asked for."""
    if not isinstance(state, dict):
        return None
    return {
        **state,
        "delivered": shown_time(state["deliveredAt"]),
        "next_attempt": shown_time(state["nextAttemptAt"]),
    }


async def _whole_result(request: web.Request) -> tuple[str, object]:
    """The execution's id and its whole result (never the preview); 404 for an unknown
    execution, 409 for one that has not finished."""
    execution_id = request.match_info["execution_id"]
    exists, result = await result_store.full_result(request.app[POOL], execution_id)
    if not exists:
        raise ApiError(404, "EXECUTION_NOT_FOUND", f"no execution {execution_id!r}")
    if result is None:
        raise ApiError(409, "RESULT_NOT_READY", f"execution {execution_id!r} has not finished")
    return execution_id, result


@api.get(
    EXECUTIONS + "/{execution_id}/result.json",
    "Download an execution's whole result as a JSON file",
    responses={200: None, 404: None, 409: None},
    content_types={200: "application/json"},
)
async def result_json(request: web.Request) -> web.Response:
    execution_id, result = await _whole_result(request)
    return web.Response(
        text=json.dumps(result, indent=2, ensure_ascii=False),
        content_type="application/json",
        headers={"Content-Disposition": attachment(f"{execution_id}.json")},
    )


@api.get(
    EXECUTIONS + "/{execution_id}/result.csv",
    "Download an execution's result table as CSV; 409 RESULT_NOT_TABULAR when it holds no rows",
    responses={200: None, 404: None, 409: None},
    content_types={200: "text/csv"},
)
async def result_csv(request: web.Request) -> web.Response:
    execution_id, result = await _whole_result(request)
    rows = result_views.table_rows(result)
    if rows is None:
        raise ApiError(
            409,
            "RESULT_NOT_TABULAR",
            "the result holds no list of objects to tabulate (neither itself, its data, nor"
            " its only list); download result.json instead",
        )
    return web.Response(
        text=result_views.to_csv(rows),
        content_type="text/csv",
        headers={"Content-Disposition": attachment(f"{execution_id}.csv")},
    )


@api.post(
    EXECUTIONS + "/{execution_id}/stop",
    "Stop a queued or running execution from its page, as POST /api/executions/stop does",
    responses={303: None, 403: None, 404: None},
)
async def stop_execution(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    await request_stop(request.app, execution_id)
    return see_other(detail_url(execution_id))
