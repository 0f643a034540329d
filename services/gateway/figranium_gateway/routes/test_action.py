"""``POST /api/tasks/test-action``: Figranium's block test, one action tried on a scratch page.

The gateway drives no browser: a runner does it (request/reply, as for page captures),
running the task up to the action in a clean context under the runs' URL policy and
egress, then the action itself. The body and the answer are Figranium's: ``{taskSnapshot,
targetActionId, variables}`` in, ``{actionId, status, durationMs, resolvedInputs, output,
errorMessage, variables, logs, screenshotUrl, timestamp}`` out.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.jsontypes import GivenJson, GivenObject, JsonObject
from figranium_common.models import TestActionRequest, now_ms
from figranium_gateway import dispatch, runner_tools
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routing import Router
from figranium_gateway.run_variables import given_variables
from figranium_gateway.state import BOX, NC, POOL
from figranium_gateway.validation import validate_task

api = Router("tasks")

TEST_TIMEOUT_SECONDS = 90.0
UNTESTABLE = frozenset({"repeat", "foreach", "on_error", "else", "end"})


class TestActionBody(BaseModel):
    __test__ = False

    taskSnapshot: GivenObject = Field(description="the task as the editor holds it")
    targetActionId: str = Field(description="the id of the action to test")
    variables: GivenObject = Field(default_factory=dict, description="variable values")
    runId: str | None = None


class TestActionAnswer(BaseModel):
    __test__ = False

    actionId: str
    status: str = Field(description="success, error, or not_reached (an earlier step failed)")
    durationMs: int
    resolvedInputs: GivenObject
    output: GivenJson = None
    errorMessage: str | None = None
    variables: GivenObject
    logs: list[str]
    screenshotUrl: str | None = Field(description="always null: a test keeps no captures")
    timestamp: int


def _target(raw: JsonObject) -> tuple[JsonObject, str, int]:
    """The task snapshot, the tested action's id and its index; 400 unless it is there."""
    snapshot = raw.get("taskSnapshot")
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("actions"), list):
        raise ApiError(400, "INVALID_TASK_SNAPSHOT", "taskSnapshot: a task with its actions")
    target = raw.get("targetActionId")
    actions = snapshot["actions"]
    wanted = "" if target is None or isinstance(target, dict | list) else str(target)
    for index, action in enumerate(actions):
        if wanted and isinstance(action, dict) and str(action.get("id")) == wanted:
            if action.get("type") in UNTESTABLE:
                raise ApiError(
                    400,
                    "INVALID_TARGET_ACTION",
                    f"a {action.get('type')} action has no effect of its own to test",
                )
            return snapshot, wanted, index
    raise ApiError(400, "INVALID_TARGET_ACTION", "targetActionId: the id of one of its actions")


@api.post(
    "/api/tasks/test-action",
    "Run one action of a task on a scratch page (after the actions before it) and say what it did",
    body=TestActionBody,
    responses={200: TestActionAnswer, 400: ErrorBody, 422: ErrorBody, 503: ErrorBody},
)
async def test_action(request: web.Request) -> web.Response:
    app = request.app
    raw = await read_json_object(request)
    snapshot, action_id, index = _target(raw)
    values = given_variables(raw).run_values()
    task = validate_task(snapshot).dump()
    task["statelessExecution"] = True  # as Figranium's test: no saved state read or written
    # The proxies and started tasks a run of it would carry.
    run = await dispatch.build_run_request(
        app[POOL],
        app[BOX],
        execution_id="test-action",
        task=task,
        variables=values,
        source="block-test",
        timeout_seconds=TEST_TIMEOUT_SECONDS,
    )
    asked = TestActionRequest(
        task=run.task,
        action_index=index,
        variables=values,
        proxies=run.proxies,
        subtasks=run.subtasks,
        timeout_seconds=TEST_TIMEOUT_SECONDS,
    )
    try:
        reply = await runner_tools.try_action(app[NC], asked, timeout=TEST_TIMEOUT_SECONDS + 10)
    except runner_tools.RunnerUnavailable as exc:
        raise ApiError(503, "NO_RUNNER", exc.details) from None
    if reply.error is not None:
        raise ApiError(422, "BLOCK_TEST_FAILED", reply.error)
    answer = TestActionAnswer(
        actionId=action_id,
        status=reply.status,
        durationMs=reply.durationMs,
        resolvedInputs=reply.resolvedInputs,
        output=reply.output,
        errorMessage=reply.errorMessage,
        variables=reply.variables,
        logs=reply.logs,
        screenshotUrl=None,
        timestamp=now_ms(),
    )
    return web.json_response(answer.model_dump())
