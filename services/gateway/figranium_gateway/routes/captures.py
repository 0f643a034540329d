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


def _kind(name: str) -> str:
    if "_download_" in name:
        return "download"
    return "recording" if name.endswith(".webm") else "screenshot"


async def _list(request: web.Request, *, kinds: frozenset[str]) -> list[dict[str, object]]:
    run_id = request.query.get("runId")
    if run_id is not None and not _CAPTURE_NAME.match(run_id):
        raise ApiError(400, "INVALID_QUERY", "runId is letters, digits, _ . : and -")
    bucket = await captures_store(request.app[JS])
    try:
        objects = await bucket.list()
    except NotFoundError:  # an empty bucket answers "not found"
        objects = []
    listed = []
    for info in objects:
        name = info.name or ""
        if info.deleted or _kind(name) not in kinds:
            continue
        if run_id is not None and not name.startswith(f"{run_id}_"):
            continue
        listed.append(
            {
                "name": name,
                "url": f"/captures/{name}",
                "size": info.size or 0,
                "modified": info.mtime,
                "type": _kind(name),
            }
        )
    listed.sort(key=lambda entry: str(entry["modified"] or ""), reverse=True)
    return listed


@routes.get("/api/data/captures")
async def list_captures(request: web.Request) -> web.Response:
    kinds = frozenset({"screenshot", "recording", "download"})
    return web.json_response({"captures": await _list(request, kinds=kinds)})


@routes.get("/api/data/screenshots")
async def list_screenshots(request: web.Request) -> web.Response:
    return web.json_response({"screenshots": await _list(request, kinds=frozenset({"screenshot"}))})
