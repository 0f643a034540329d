"""``GET /api/actions/palette``: every action type with its fields, for a task editor.

The palette (``figranium_common.action_palette``) is generated from the action models
when the gateway starts and changes only with its version, so it is answered with an ETag
of its content: a client that sends it back in ``If-None-Match`` gets a 304.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from figranium_common.action_palette import ACTION_PALETTE, ActionPalette
from figranium_gateway.routing import Router

api = Router("actions")

BODY = ACTION_PALETTE.model_dump_json().encode()
ETAG = hashlib.sha256(BODY).hexdigest()[:32]
# Cached, but asked about again each time: a new gateway version may change the palette.
CACHE_CONTROL = "private, no-cache"


def _unchanged(request: web.Request) -> bool:
    given = request.if_none_match
    return given is not None and any(tag.value in (ETAG, "*") for tag in given)


@api.get(
    "/api/actions/palette",
    "Every action type with its label, group, block role and fields, for a task editor",
    responses={200: ActionPalette, 304: None},
)
async def action_palette(request: web.Request) -> web.Response:
    if _unchanged(request):
        response = web.Response(status=304)
    else:
        response = web.Response(body=BODY, content_type="application/json")
    response.etag = ETAG
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response
