"""HTTP error translation: every refusal is ``{"error": CODE, "details": text}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import structlog
from aiohttp import web
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from figranium_common.db import busy
from figranium_common.errors import FigraniumError
from figranium_common.jsontypes import JsonValue
from figranium_gateway.state import POOL

log = structlog.get_logger(__name__)

# How long a caller refused because every database connection was busy should wait.
BUSY_RETRY_AFTER_SECONDS = 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class ApiError(FigraniumError):
    def __init__(self, status: int, code: str, details: str, **extra: JsonValue) -> None:
        super().__init__(details, code=code)
        self.status = status
        self.extra = extra


def found(value: T | None, missing: ApiError) -> T:
    """``value`` when there is one (a row, a task), else the refusal ``missing`` (a 404)."""
    if value is None:
        raise missing
    return value


def error_response(status: int, code: str, details: str, **extra: JsonValue) -> web.Response:
    return web.json_response({"error": code, "details": details, **extra}, status=status)


def retry_later(code: str, details: str, seconds: int, *, status: int = 429) -> web.Response:
    """A refusal the client may try again ``seconds`` later (``Retry-After``): 429 Too
    Many Requests unless ``status`` says otherwise."""
    response = error_response(status, code, details)
    response.headers["Retry-After"] = str(seconds)
    return response


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


def _nul_in_request(request: web.Request) -> bool:
    """A NUL character in the path or the query: no text column can hold one, so it is
    refused here rather than failing in PostgreSQL."""
    if "\x00" in request.path:
        return True
    return any("\x00" in key or "\x00" in value for key, value in request.query.items())


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _nul_in_request(request):
        return error_response(400, "INVALID_REQUEST", "the path or query holds a NUL character")
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
        if pool is None or not busy(pool):
            log.warning("http.storage_unavailable", path=request.path, error=str(exc))
            return error_response(503, "STORAGE_UNAVAILABLE", "the database is not reachable")
        # Overloaded, not down: the same call a moment later will likely pass.
        log.warning("http.busy", path=request.path, error=str(exc))
        return retry_later(
            "SERVER_BUSY",
            "every database connection is in use; try again shortly",
            BUSY_RETRY_AFTER_SECONDS,
            status=503,
        )
    except psycopg.OperationalError as exc:
        log.warning("http.storage_unavailable", path=request.path, error=str(exc))
        return error_response(503, "STORAGE_UNAVAILABLE", "the database is not reachable")
    except Exception:
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        return error_response(500, "INTERNAL_ERROR", "the server could not handle the request")
