"""HTTP error translation: every refusal is ``{"error": CODE, "details": text}``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from aiohttp import web
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from figranium_common.db import all_in_use
from figranium_common.errors import FigraniumError
from figranium_gateway.state import POOL

log = structlog.get_logger(__name__)

# How long a caller refused because every database connection was busy should wait.
BUSY_RETRY_AFTER_SECONDS = 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Arrays and objects nested deeper than this are refused as INVALID_JSON: no task,
# variable set or setting comes near it.
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"


class ApiError(FigraniumError):
    def __init__(self, status: int, code: str, details: str, **extra: Any) -> None:
        super().__init__(details, code=code)
        self.status = status
        self.extra = extra


def error_response(status: int, code: str, details: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "details": details, **extra}, status=status)


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ``('actions', 3, 'type')`` → ``actions[3].type``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(("function-", "literal[")):  # pydantic's internal steps
            path += f".{part}" if path else part
    return path or "body"


def describe_validation_error(exc: ValidationError) -> str:
    return "; ".join(f"{field_path(err['loc'])}: {err['msg']}" for err in exc.errors())


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, refused (ApiError 400) when malformed or nested too deeply.

    The depth bound keeps every later recursive walk (validation, storage, runners) far
    from Python's recursion limit, whatever the stack depth it runs at.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "INVALID_JSON", _TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_JSON", f"request body is not valid JSON: {exc}") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ApiError(400, "INVALID_JSON", _TOO_DEEP)
    return value


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0); no recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
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


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is an empty object."""
    raw = await request.read()
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


def _nul_path(value: Any, path: str) -> str | None:
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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.details, **exc.extra)
    except ValidationError as exc:
        return error_response(400, "INVALID_BODY", describe_validation_error(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        # aiohttp's text names the limit and the size: "Maximum request body size …".
        return error_response(413, "PAYLOAD_TOO_LARGE", exc.text or "the request body is too large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = exc.reason.upper().replace(" ", "_")
            return error_response(exc.status, code, exc.text or exc.reason)
        raise
    except PoolTimeout as exc:
        pool = request.app.get(POOL)
        if pool is None or not all_in_use(pool):
            log.warning("http.storage_unavailable", path=request.path, error=str(exc))
            return error_response(503, "STORAGE_UNAVAILABLE", "the database is not reachable")
        # Overloaded, not down: the same call a moment later will likely pass.
        log.warning("http.busy", path=request.path, error=str(exc))
        response = error_response(
            503, "SERVER_BUSY", "every database connection is in use; try again shortly"
        )
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
        return response
    except psycopg.OperationalError as exc:
        log.warning("http.storage_unavailable", path=request.path, error=str(exc))
        return error_response(503, "STORAGE_UNAVAILABLE", "the database is not reachable")
    except Exception:
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        return error_response(500, "INTERNAL_ERROR", "the server could not handle the request")
