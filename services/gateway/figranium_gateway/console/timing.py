"""The server time of every console page, as a ``Server-Timing`` header.

``Server-Timing: app;dur=<ms>`` is the time from the request entering the gateway's
handler chain (just inside the metrics middleware) to its response being ready: the
session check, the handler, its queries and the template. Browsers show it in their
developer tools, and ``make bench`` reads it for the console's speed figure
(docs/console.md, "Speed"). API routes are left alone.
"""

from __future__ import annotations

import time

from aiohttp import web

from figranium_gateway.console.gate import is_console
from figranium_gateway.errors import Handler

HEADER = "Server-Timing"


def server_timing(started: float) -> str:
    """The header's value for a response made since ``started`` (``perf_counter``)."""
    return f"app;dur={(time.perf_counter() - started) * 1000:.1f}"


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_console(request.path):
        return await handler(request)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect (sign-in) is an answer too
        exc.headers[HEADER] = server_timing(started)
        raise
    if not response.prepared:
        response.headers[HEADER] = server_timing(started)
    return response
