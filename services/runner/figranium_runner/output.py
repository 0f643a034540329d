"""The task's output step: a successful run's data pushed to Baserow as rows.

It runs on the runner (which has the network, never the database) with the target the
gateway or scheduler resolved into the run request, token included. A failed push turns
the run into an error, or, with ``onError: ignore``, into a line in the run's log.
The token only ever goes into the Authorization header: never into a log line or error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog

from figranium_common import baserow
from figranium_common.errors import FigraniumError
from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_common.models import OutputTarget, RunResult
from figranium_common.outbound_http import safe_request

log = structlog.get_logger(__name__)

LogSink = Callable[[str], Awaitable[None]]

BATCH_LIMIT = 200  # Baserow refuses batch requests of more items
REQUEST_TIMEOUT_SECONDS = 30.0


class OutputError(FigraniumError):
    code = "OUTPUT_FAILED"


def _cell(value: JsonValue) -> JsonValue:
    """A value as a Baserow cell: nested structures as JSON text, nothing as empty text."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _row(item: JsonMapping) -> JsonObject:
    return {str(key): _cell(value) for key, value in item.items()}


def rows_of(data: JsonValue) -> list[JsonObject] | JsonObject:
    """The rows to create: a list for the batch endpoint, one object for the single one.

    Raises OutputError for data that is not rows (nothing, a scalar, a list of non-objects).
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise OutputError("the extracted data is text, not JSON rows") from None
    if isinstance(data, dict):
        return _row(data)
    if isinstance(data, list):
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise OutputError(
                    f"row {index} is {type(item).__name__}, not an object of column values"
                )
        return [_row(item) for item in data if isinstance(item, dict)]
    if data is None:
        raise OutputError("the run extracted no data")
    raise OutputError(f"the extracted data is {type(data).__name__}, not an object or a list")


async def _post(target: OutputTarget, path: str, body: object, *, allow_private: bool) -> None:
    url = f"{target.base_url.rstrip('/')}/api/database/rows/table/{target.table_id}/{path}"
    try:
        response = await safe_request(
            "POST",
            f"{url}?user_field_names=true",
            allow_private=allow_private,
            headers={**baserow.auth_headers(target.token), "Content-Type": "application/json"},
            body=json.dumps(body, ensure_ascii=False).encode(),
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except FigraniumError as exc:  # a refused URL, or the network
        raise OutputError(exc.details) from None
    if not 200 <= response.status < 300:
        raise OutputError(baserow.problem(response))


async def push(target: OutputTarget, data: JsonValue, *, allow_private: bool) -> int:
    """Create the data's rows in the target table; the number of rows created."""
    if target.problem:
        raise OutputError(target.problem)
    if not target.token:
        raise OutputError(f"credential {target.credential_id!r} has no token")
    if not target.table_id.isascii() or not target.table_id.isdigit():
        raise OutputError(f"tableId {target.table_id!r} is not a Baserow table id")
    rows = rows_of(data)
    if isinstance(rows, dict):
        await _post(target, "", rows, allow_private=allow_private)
        return 1
    pushed = 0
    for start in range(0, len(rows), BATCH_LIMIT):
        chunk = rows[start : start + BATCH_LIMIT]
        try:
            await _post(target, "batch/", {"items": chunk}, allow_private=allow_private)
        except OutputError as exc:
            if pushed:
                raise OutputError(f"{exc.details} (after {pushed} rows were created)") from None
            raise
        pushed += len(chunk)
    return pushed


async def deliver(
    result: RunResult,
    target: OutputTarget | None,
    *,
    allow_private: bool,
    emit: LogSink,
) -> RunResult:
    """The result after the output step: unchanged, or an error when the push failed and
    the task's ``onError`` is ``fail``. Only successful runs push anything."""
    if target is None or result.outcome != "success":
        return result
    try:
        count = await push(target, result.data, allow_private=allow_private)
    except OutputError as exc:
        message = f"Output to Baserow failed: {exc.details}"
        log.warning(
            "run.output_failed",
            table_id=target.table_id,
            credential_id=target.credential_id,
            on_error=target.on_error,
            error=exc.details,
        )
        if target.on_error == "ignore":
            line = f"{message} (ignored: onError is ignore)"
            await emit(line)
            return result.model_copy(update={"logs": [*result.logs, line]})
        await emit(message)
        return result.model_copy(
            update={"outcome": "error", "error": message, "logs": [*result.logs, message]}
        )
    noun = "row" if count == 1 else "rows"
    line = f"Pushed {count} {noun} to Baserow table {target.table_id}"
    log.info("run.output_pushed", table_id=target.table_id, rows=count)
    await emit(line)
    return result.model_copy(update={"logs": [*result.logs, line]})
