"""``GET /api/health``: no auth, 503 as soon as PostgreSQL cannot answer."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_gateway.openapi import documented
from figranium_gateway.state import DATABASE_PROBE, NC, STARTED_AT

routes = web.RouteTableDef()


VERSION = metadata.version("figranium-gateway")


class HealthBody(BaseModel):
    """The gateway's view of its dependencies; ``storage_error`` only when degraded."""

    status: Literal["ok", "degraded"]
    uptime: float = Field(description="seconds since the gateway started")
    storage: Literal["postgres"] = "postgres"
    version: str = Field(description="the gateway's release")
    nats: Literal["connected", "disconnected"]
    storage_error: str | None = Field(
        default=None, description="why PostgreSQL did not answer (503 only)"
    )


@routes.get("/api/health")
@documented(
    "GET",
    "/api/health",
    "Service health: 200 when PostgreSQL answers, 503 when it does not",
    tag="health",
    responses={200: HealthBody, 503: HealthBody},
    public=True,
)
async def health(request: web.Request) -> web.Response:
    app = request.app
    storage_error = await app[DATABASE_PROBE].error()
    body = HealthBody(
        status="ok" if storage_error is None else "degraded",
        uptime=round(time.monotonic() - app[STARTED_AT], 3),
        nats="connected" if app[NC].is_connected else "disconnected",
        version=VERSION,
        storage_error=storage_error,
    )
    return web.json_response(
        body.model_dump(exclude_none=True), status=200 if storage_error is None else 503
    )
