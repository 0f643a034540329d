"""``GET /api/health``: no auth, 503 as soon as PostgreSQL cannot answer.

Anyone can ask, so the answer keeps Figranium's shape and says nothing a caller without
the key should learn: never the driver's error text (host names, user names, addresses).
The reason is on the ops port's ``/readyz``.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Final, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_gateway.routing import Router
from figranium_gateway.state import DATABASE_PROBE, STARTED_AT

api = Router("health")


VERSION = metadata.version("figranium-gateway")


STORAGE_ERROR: Final = "Database unreachable"


class HealthBody(BaseModel):
    """Figranium's health answer; ``storage_error`` only when degraded."""

    status: Literal["ok", "degraded"]
    uptime: int = Field(description="whole seconds since the gateway started")
    storage: Literal["postgres"] = "postgres"
    version: str = Field(description="the gateway's release")
    storage_error: Literal["Database unreachable"] | None = Field(
        default=None, description="set when PostgreSQL did not answer (503 only)"
    )


@api.get(
    "/api/health",
    "Service health: 200 when PostgreSQL answers, 503 when it does not",
    responses={200: HealthBody, 503: HealthBody},
    public=True,
)
async def health(request: web.Request) -> web.Response:
    app = request.app
    storage_error = await app[DATABASE_PROBE].error()
    body = HealthBody(
        status="ok" if storage_error is None else "degraded",
        uptime=int(time.monotonic() - app[STARTED_AT]),
        version=VERSION,
        storage_error=None if storage_error is None else STORAGE_ERROR,
    )
    return web.json_response(
        body.model_dump(exclude_none=True), status=200 if storage_error is None else 503
    )
