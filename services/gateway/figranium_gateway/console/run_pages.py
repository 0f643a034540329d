"""The run form of a task: one field per declared variable (typed) and extra
``name=value`` lines; it starts an asynchronous run exactly as
``POST /api/tasks/:id/api`` with ``"async": true`` does (``run_saved``), then opens the
execution's page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web
from multidict import MultiMapping

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_gateway.console.execution_pages import detail_url
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.console.task_context import HTML, stored_task, tab_context, task_url
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import task_id_of
from figranium_gateway.routes.runs import run_saved
from figranium_gateway.routing import Router

api = Router("console")

PREFIX = "var:"  # a declared variable's field is named PREFIX + its name
EXTRA = "extra"


@dataclass
class Field:
    """One declared variable as a form field."""

    name: str
    type: str
    value: JsonValue
    id: str


@dataclass
class RunForm:
    """What the form holds: each field's value as typed (secrets too: they are never shown
    again) and the extra lines."""

    given: dict[str, str | bool] = field(default_factory=dict)
    extra: str = ""

    def shown(self, spec: Field) -> JsonValue:
        return "" if spec.type == "secret" else self.given.get(spec.name, spec.value)


def fields_of(task: JsonObject) -> list[Field]:
    declared = task.get("variables")
    if not isinstance(declared, dict):
        return []
    fields = []
    for number, (name, spec) in enumerate(declared.items()):
        kind = spec.get("type", "string") if isinstance(spec, dict) else "string"
        value = spec.get("value") if isinstance(spec, dict) else spec
        shown = "" if kind == "secret" else value
        fields.append(Field(name, str(kind), shown, f"var-{number}"))
    return fields


def _number(name: str, text: str) -> JsonValue:
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "INVALID_VARIABLE", f"{name}: {text!r} is not a number") from None
    return int(value) if value.is_integer() and "." not in text else value


def _extra_lines(text: str) -> JsonObject:
    values: JsonObject = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise ApiError(400, "INVALID_VARIABLE", f"extra line {number}: write name=value")
        values[name.strip()] = value
    return values


def read_form(fields: list[Field], form: MultiMapping[object]) -> RunForm:
    read = RunForm(extra=str(form.get(EXTRA, "")))
    for spec in fields:
        key = PREFIX + spec.name
        read.given[spec.name] = key in form if spec.type == "boolean" else str(form.get(key, ""))
    return read


def run_variables(fields: list[Field], read: RunForm) -> JsonObject:
    """The run's variables; a field left empty keeps the task's value (a secret's stored
    value included). Raises ApiError 400 for a value that is not of its type."""
    variables: JsonObject = {}
    for spec in fields:
        given = read.given.get(spec.name, "")
        if isinstance(given, bool):
            variables[spec.name] = given
        elif given.strip():
            variables[spec.name] = _number(spec.name, given) if spec.type == "number" else given
    variables.update(_extra_lines(read.extra))
    return variables


async def _page(
    request: web.Request,
    form: RunForm | None = None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    task = await stored_task(request)
    fields = fields_of(task)
    if form is not None:
        for spec in fields:
            spec.value = form.shown(spec)
    context = {
        **await tab_context(request, task, "run"),
        "fields": fields,
        "prefix": PREFIX,
        "extra_field": EXTRA,
        "extra": "" if form is None else form.extra,
        "error": error,
        "action": task_url(str(task["id"]), "/run"),
    }
    return render(request, "task_run.html", context, status=status)


@api.get(
    "/console/tasks/{task_id}/run",
    "The console's form to run a task with its variables",
    responses={200: None, 404: None},
    content_types=HTML,
)
async def run_form(request: web.Request) -> web.Response:
    return await _page(request)


@api.post(
    "/console/tasks/{task_id}/run",
    "Start a run from the console's form (as POST /api/tasks/:id/api with async) and open it",
    responses={303: None, 400: None, 403: None, 404: None, 409: None, 429: None, 503: None},
    content_types={400: "text/html", 429: "text/html"},
)
async def start_run(request: web.Request) -> web.Response:
    task = await stored_task(request)
    fields = fields_of(task)
    read = read_form(fields, await request.post())
    try:
        variables = run_variables(fields, read)
        answer = await run_saved(
            request, task_id_of(request), {"variables": variables, "async": True}
        )
    except ApiError as exc:
        return await _page(request, read, error=exc.details, status=exc.status)
    body = json.loads(answer.text or "{}")
    if answer.status != 202:
        return await _page(request, read, error=str(body.get("details")), status=answer.status)
    return see_other(detail_url(str(body["executionId"])))
