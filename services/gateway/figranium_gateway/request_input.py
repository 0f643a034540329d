"""What a handler reads from a request: its JSON body, path parameters, API-key fields.

Bodies are parsed here once for every route (and for auth.py's key in a body), so each
refuses malformed, too deeply nested or NUL-carrying JSON with the same answer.
"""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_gateway.errors import ApiError

M = TypeVar("M", bound=BaseModel)

# Arrays and objects nested deeper than this are refused as INVALID_JSON: no task,
# variable set or setting comes near it.
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"
# A body may carry the API key itself (auth.py reads these); they are never stored.
CREDENTIAL_FIELDS = ("apiKey", "key")


def parse_json(raw: bytes) -> JsonValue:
    """``raw`` as JSON, refused (ApiError 400) when malformed or nested too deeply.

    The depth bound keeps every later recursive walk (validation, storage, runners) far
    from Python's recursion limit, whatever the stack depth it runs at.
    """
    try:
        value: JsonValue = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "INVALID_JSON", _TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_JSON", f"request body is not valid JSON: {exc}") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ApiError(400, "INVALID_JSON", _TOO_DEEP)
    return value


def json_depth(value: JsonValue) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0); no recursion."""
    deepest = 0
    pending: list[tuple[JsonValue, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_JSON_DEPTH:
                break  # refused anyway: no need to walk the rest
            pending.extend((child, depth + 1) for child in item)
    return deepest


async def read_json_object(request: web.Request) -> JsonObject:
    """The request body as a JSON object; an empty body is an empty object."""
    return parse_json_object(await request.read())


def parse_json_object(raw: bytes) -> JsonObject:
    """``raw`` as a JSON object (empty: an empty object), refused as a request body is."""
    if not raw.strip():
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_BODY", "request body must be a JSON object")
    where = _nul_path(body, "")
    if where is not None:
        # PostgreSQL's jsonb cannot hold U+0000; refuse it here rather than fail later.
        raise ApiError(400, "INVALID_BODY", f"{where or 'body'}: text may not contain \\u0000")
    return body


def _nul_path(value: JsonValue, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_path(key, path)
            if found is None:
                found = _nul_path(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    return None


async def read_model(request: web.Request, model: type[M]) -> M:
    """The JSON body validated by ``model`` (a ValidationError answers 400 INVALID_BODY)."""
    return model.model_validate(await read_json_object(request))


def without_credentials(body: JsonMapping) -> JsonObject:
    """The body without the API key a client may authenticate with."""
    return {k: v for k, v in body.items() if k not in CREDENTIAL_FIELDS}


def task_id_of(request: web.Request) -> str:
    return request.match_info["task_id"]


def task_not_found(task_id: str) -> ApiError:
    return ApiError(404, "TASK_NOT_FOUND", f"no task {task_id!r}")
