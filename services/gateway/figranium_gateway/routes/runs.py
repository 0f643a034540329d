"""Running tasks: saved ones (synchronously or not), ad-hoc ones, and stopping runs."""

from __future__ import annotations

import re
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from figranium_common import queue
from figranium_common.config import Config
from figranium_common.jsontypes import GivenObject, JsonMapping, JsonObject
from figranium_common.models import RunResult, Task, now_ms
from figranium_gateway import admission, changes, dispatch
from figranium_gateway.errors import ApiError, Handler, found
from figranium_gateway.headful_runners import require_headful
from figranium_gateway.ingest import notify_finished
from figranium_gateway.metrics import METRICS
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import (
    read_json_object,
    task_id_of,
    task_not_found,
    without_credentials,
)
from figranium_gateway.routing import RouteOptions, Router
from figranium_gateway.run_variables import declare_missing, given_variables
from figranium_gateway.state import BOX, CONFIG, JS, NC, POOL, TRANSIT, WAITERS
from figranium_gateway.stopping import request_stop
from figranium_gateway.store import executions as execution_store
from figranium_gateway.store import recording
from figranium_gateway.store import tasks as task_store
from figranium_gateway.validation import (
    check_outbound,
    checked_webhook_url,
    validate_task,
    webhook_url_type,
)

log = structlog.get_logger(__name__)
api = Router("runs")

_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


class RunBody(BaseModel):
    """The body of a run call; every field is optional."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    variables: GivenObject = Field(
        default_factory=dict,
        description='plain values ({"q": "x"}) or typed declarations'
        ' ({"q": {"type": "string", "value": "x"}}), mixed as you like',
    )
    taskVariables: GivenObject | None = Field(
        default=None, description="the same as variables, winning name by name"
    )
    runId: str | None = Field(default=None, pattern=_RUN_ID.pattern)
    statelessExecution: bool | None = None
    webhookUrl: str | None = None
    async_: bool = Field(default=False, alias="async")


class RunAnswer(RunResult):
    executionId: str
    runId: str
    success: bool


class RunFailure(RunAnswer):
    details: str
    error: str


class QueuedAnswer(BaseModel):
    executionId: str
    status: Literal["queued"]
    statusUrl: str


class StopBody(BaseModel):
    runId: str


class StopAnswer(BaseModel):
    success: bool
    runId: str
    phase: str


RUN_RESPONSES: dict[int, type[BaseModel] | None] = {
    200: RunAnswer,
    202: QueuedAnswer,
    400: ErrorBody,
    404: ErrorBody,
    409: ErrorBody,
    422: RunFailure,
    429: ErrorBody,  # QUEUE_FULL, with Retry-After
    500: RunFailure,
    503: ErrorBody,
    504: ErrorBody,
}

_SAVED_RUN: RouteOptions = {"body": RunBody, "responses": RUN_RESPONSES}


def _run_body(raw: JsonMapping) -> RunBody:
    body = dict(raw)
    webhook_url_type(body)
    if body.get("variables") is None:
        body.pop("variables", None)
    return RunBody.model_validate(body)


def _wants_async(request: web.Request, body: RunBody) -> bool:
    prefer = request.headers.get("Prefer", "").lower()
    return body.async_ or "respond-async" in prefer


async def _run(request: web.Request, task: JsonObject, body: RunBody) -> web.Response:
    app = request.app
    pool = app[POOL]
    if body.statelessExecution is not None:
        # Kept in the snapshot, so whatever re-publishes this run later runs it the same way.
        task["statelessExecution"] = body.statelessExecution
    webhook_url = await checked_webhook_url(
        body.webhookUrl, allow_private=app[CONFIG].allow_private_networks
    )
    await _check_task_url(task, app[CONFIG])
    if task.get("mode") == "headful":
        await require_headful(app)
    execution_id = body.runId or queue.new_execution_id()
    timeout = app[CONFIG].run_timeout_seconds
    with (
        structlog.contextvars.bound_contextvars(execution_id=execution_id, task_id=task.get("id")),
        app[WAITERS].waiting(execution_id) as waiter,
    ):
        # One connection from admission to the run request: once the execution is saved,
        # nothing waits for the pool again before the publish.
        new = queue.NewExecution(
            execution_id, task, "api", body.variables, request.method, request.path, webhook_url
        )
        async with pool.connection() as conn:
            limit = app[CONFIG].run_queue_limit
            try:
                created = await execution_store.create_execution(conn, new, queue_limit=limit)
            except execution_store.QueueFull:
                return admission.queue_full(limit)
            if not created:
                raise ApiError(409, "RUN_ID_TAKEN", f"an execution {execution_id!r} already exists")
            try:
                run = await queue.gather_run_request(conn, app[BOX], new, timeout_seconds=timeout)
            except ValidationError as exc:
                run, invalid = None, exc
        await changes.notify(app[NC])
        if run is None:
            await _fail_invalid(app, execution_id, invalid)
        else:
            try:
                await queue.publish_run(app[JS], run, app[TRANSIT])
            except Exception as exc:
                log.error("run.publish_failed", error=str(exc))
                raise ApiError(
                    503,
                    "QUEUE_UNAVAILABLE",
                    "the run is saved as queued and will be published again shortly",
                    executionId=execution_id,
                ) from exc
        app[METRICS].runs_requested.labels(source="api").inc()
        log.info("run.queued")
        if _wants_async(request, body):
            status_url = f"/api/executions/{execution_id}"
            return web.json_response(
                {"executionId": execution_id, "status": "queued", "statusUrl": status_url},
                status=202,
                headers={"Location": status_url, "Preference-Applied": "respond-async"},
            )
        # A little longer than the run may take, so the runner's own timeout answers first.
        wait = timeout + min(15.0, timeout)
        execution = await dispatch.wait_finished(pool, waiter, execution_id, wait)
    if execution is None:
        raise ApiError(
            504,
            "RUN_TIMEOUT",
            f"no result within {timeout:g} s; the run goes on, follow it at"
            f" /api/executions/{execution_id}",
            executionId=execution_id,
        )
    return run_answer(execution)


async def _fail_invalid(app: web.Application, execution_id: str, exc: ValidationError) -> None:
    """Finish with an error a run whose saved task today's rules refuse (an older release
    saved it), as a runner refuses one: the caller gets the run's failure."""
    result = RunResult(outcome="error", error=f"the task is not valid: {exc}")
    failed = recording.gateway_result(execution_id, result, duration_ms=0, at=now_ms())
    await recording.record_result(app[POOL], failed, {"type": "result", "invalid": True})
    await notify_finished(app[NC], execution_id, app[WAITERS].finished)


async def _check_task_url(task: JsonMapping, config: Config) -> None:
    """Refuse a run whose start URL the runner would refuse, before anything is queued.

    A URL built from variables is only known in the runner, which checks it there.
    """
    url = task.get("url")
    if not isinstance(url, str) or not url.strip() or "{$" in url:
        return
    await check_outbound(
        url.strip(),
        "url",
        allow_private=config.allow_private_networks,
        allow_metadata=config.allow_metadata_address,
    )


def run_answer(execution: execution_store.RunOutcome) -> web.Response:
    result: JsonObject = dict(execution["result"] or {})
    outcome = execution["outcome"] or result.get("outcome")
    # runId and success are what Figranium's clients read; executionId is the same id.
    answer = {
        **result,
        "executionId": execution["id"],
        "runId": execution["id"],
        "outcome": outcome,
        "success": outcome == "success",
    }
    status = execution["status"] or 500
    if status >= 400:
        code = "RUN_CRASHED" if outcome == "crashed" else "RUN_FAILED"
        details = result.get("error") or f"the run ended with outcome {outcome}"
        return web.json_response({**answer, "error": code, "details": details}, status=status)
    return web.json_response(answer, status=status)


@api.post(
    "/api/tasks/{task_id}/api",
    'Run a saved task; answers its result, or 202 with {"async": true}',
    **_SAVED_RUN,
)
@api.post(
    "/tasks/{task_id}/api", "Run a saved task (the route the Python client uses)", **_SAVED_RUN
)
async def run_task(request: web.Request) -> web.Response:
    return await run_saved(request, task_id_of(request), await read_json_object(request))


async def run_saved(request: web.Request, task_id: str, raw: JsonObject) -> web.Response:
    """Run saved task ``task_id`` with the run-call body ``raw``: the answer of
    ``POST /api/tasks/:id/api`` (202 with the execution id for ``"async": true``)."""
    given = given_variables(raw)
    body = _run_body({**raw, "variables": given.run_values(), "taskVariables": None})
    task = found(await task_store.get_task(request.app[POOL], task_id), task_not_found(task_id))
    return await _run(request, declare_missing(task, given.declared), body)


class AdHocBody(Task):
    """An unsaved task to run once, with the run-call fields alongside."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    runId: str | None = Field(default=None, pattern=_RUN_ID.pattern)
    async_: bool = Field(default=False, alias="async")


AdHocMode = Literal["agent", "scrape", "headful"]
_AD_HOC_SUMMARIES: dict[AdHocMode, str] = {
    "agent": "Run an unsaved task in the browser",
    "scrape": "Fetch a URL over HTTP and run the extraction on it",
    "headful": "Run an unsaved task in a visible browser, on a headful runner"
    " (503 when none is live)",
}


async def run_ad_hoc(request: web.Request, mode: AdHocMode, raw: JsonObject) -> web.Response:
    """Run ``raw`` (an unsaved task with the run-call fields) once in ``mode``."""
    raw = without_credentials(raw)
    # Declarations among the variables become the task's own; plain values, the run's.
    # runId and async belong to the run call.
    given = given_variables(raw)
    if raw.pop("taskVariables", None) is not None or "variables" in raw:
        raw["variables"] = given.declared
    run_fields: JsonObject = {k: raw.pop(k) for k in ("runId", "async") if k in raw}
    raw["mode"] = mode
    task = validate_task(raw).dump()
    body = _run_body(
        {
            **run_fields,
            "variables": given.values,
            "statelessExecution": raw.get("statelessExecution"),
        }
    )
    return await _run(request, task, body)


def _ad_hoc(mode: AdHocMode) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return await run_ad_hoc(request, mode, await read_json_object(request))

    return handler


for _mode, _summary in _AD_HOC_SUMMARIES.items():
    api.post(f"/{_mode}", _summary, body=AdHocBody, responses=RUN_RESPONSES)(_ad_hoc(_mode))


@api.post(
    "/api/executions/stop",
    "Stop a queued or running execution (outcome `stopped`)",
    tag="executions",
    body=StopBody,
    responses={200: StopAnswer, 400: ErrorBody, 404: ErrorBody},
)
async def stop_execution(request: web.Request) -> web.Response:
    raw = await read_json_object(request)
    run_id = raw.get("runId")
    if not run_id or not isinstance(run_id, str):
        raise ApiError(400, "MISSING_RUN_ID", 'send {"runId": "exec_..."}')
    phase = await request_stop(request.app, run_id)
    return web.json_response({"success": True, "runId": run_id, "phase": phase})
