"""Figranium's other spellings of routes this gateway has: ad-hoc runs by GET with the task
in the query string, screenshots under ``/screenshots/``, and stopping the headful session.

``GET /scrape?url=…&selector=…`` is how Figranium's scrape is linked and bookmarked (it
reads the query as the body). Fields that are objects or lists (``variables``,
``actions``, ``headers``…) come as JSON text; everything else as given.
"""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import BaseModel

from figranium_common.jsontypes import JsonObject
from figranium_gateway.errors import ApiError, Handler
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routes import captures, runs
from figranium_gateway.routing import Router
from figranium_gateway.state import HEADFUL
from figranium_gateway.stopping import request_stop

api = Router("runs")

JSON_FIELDS = frozenset(
    {
        "variables",
        "taskVariables",
        "actions",
        "headers",
        "stealth",
        "output",
        "translation",
        "extractionFields",
        "extractionGroups",
    }
)
_QUERY = {
    "url": "the page to open",
    "selector": "scrape: the element whose HTML is answered",
    "extractionScript": "the extraction script",
    "variables": "JSON object: variable values",
    "actions": "JSON array: the actions (agent)",
}


def task_from_query(request: web.Request) -> JsonObject:
    """The query string as a task body: JSON text for the structured fields."""
    raw: JsonObject = {}
    for name, value in request.query.items():
        if name == "key":  # the API key, never part of the task
            continue
        if name in JSON_FIELDS:
            try:
                raw[name] = json.loads(value)
            except ValueError:
                raise ApiError(400, "INVALID_QUERY", f"{name}: JSON text expected") from None
        else:
            raw[name] = value
    return raw


def _by_get(mode: runs.AdHocMode) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return await runs.run_ad_hoc(request, mode, task_from_query(request))

    return handler


for _mode in ("agent", "scrape"):
    api.get(
        f"/{_mode}",
        f"Run an unsaved {_mode} task given in the query string (as POST /{_mode})",
        query=_QUERY,
        responses=runs.RUN_RESPONSES,
    )(_by_get(_mode))


api.get(
    "/screenshots/{name}",
    "A capture's file (Figranium's other path for /captures/:name)",
    tag="captures",
    responses={200: None, 400: None, 404: None},
    content_types={200: "application/octet-stream"},
)(captures.get_capture)


class HeadfulStopBody(BaseModel):
    executionId: str | None = None


class HeadfulStopped(BaseModel):
    message: str
    stopped: list[str]


async def stop_headful(request: web.Request) -> web.Response:
    raw = await read_json_object(request)
    wanted = raw.get("executionId")
    if wanted is not None and not isinstance(wanted, str):
        raise ApiError(400, "INVALID_BODY", "executionId: a text")
    running = [
        runner.execution_id
        for runner in request.app[HEADFUL].runners()
        if runner.is_running and runner.execution_id
    ]
    stopped = [e for e in running if wanted in (None, e)]
    for execution_id in stopped:
        await request_stop(request.app, execution_id)
    message = "Headful session stopped." if stopped else "No active headful session."
    return web.json_response(HeadfulStopped(message=message, stopped=stopped).model_dump())


for _path in ("/api/headful/stop", "/headful/stop"):
    api.post(
        _path,
        "Stop the running headful session (or the one of executionId)",
        tag="headful",
        body=HeadfulStopBody,
        responses={200: HeadfulStopped, 400: ErrorBody},
    )(stop_headful)
