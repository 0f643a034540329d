"""Serving captures (screenshots and run videos) from the JetStream object store."""

from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath

from aiohttp import web
from nats.js.errors import NotFoundError, ObjectNotFoundError

from figranium_common.nats import captures_store
from figranium_gateway.errors import ApiError
from figranium_gateway.state import JS

routes = web.RouteTableDef()

_CAPTURE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
# Not left to mimetypes alone: it also reads the host's mime.types, which may lack .webm.
_CONTENT_TYPES = {".png": "image/png", ".webm": "video/webm"}


@routes.get("/captures/{name}")
async def get_capture(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not _CAPTURE_NAME.match(name) or ".." in name:
        raise ApiError(400, "INVALID_NAME", "capture names are letters, digits, _ . : and -")
    bucket = await captures_store(request.app[JS])
    try:
        found = await bucket.get(name)
    except (ObjectNotFoundError, NotFoundError):
        raise ApiError(404, "CAPTURE_NOT_FOUND", f"no capture {name!r}") from None
    content_type = (
        _CONTENT_TYPES.get(PurePosixPath(name).suffix.lower())
        or mimetypes.guess_type(name)[0]
        or "application/octet-stream"
    )
    return web.Response(body=found.data or b"", content_type=content_type)
