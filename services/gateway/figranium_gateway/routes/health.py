"""``GET /api/health``: no auth, 503 as soon as PostgreSQL cannot answer."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from figranium_gateway.state import NC, POOL, SETTINGS, STARTED_AT

routes = web.RouteTableDef()


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    app = request.app
    timeout = app[SETTINGS].health_db_timeout_seconds
    storage_error: str | None = None
    try:
        async with asyncio.timeout(timeout):
            async with app[POOL].connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
    except Exception as exc:
        storage_error = str(exc) or type(exc).__name__
    nats_ok = app[NC].is_connected
    body: dict[str, object] = {
        "status": "ok" if storage_error is None else "degraded",
        "uptime": round(time.monotonic() - app[STARTED_AT], 3),
        "storage": "postgres",
        "nats": "connected" if nats_ok else "disconnected",
    }
    if storage_error is not None:
        body["storage_error"] = storage_error
    return web.json_response(body, status=200 if storage_error is None else 503)
