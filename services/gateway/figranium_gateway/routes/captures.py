"""Serving captures (screenshots and run videos) from the JetStream object store, and
listing them from its index in PostgreSQL (``store.captures``)."""

from __future__ import annotations

import re
from typing import Literal, TypedDict

from aiohttp import web
from nats.js.errors import NotFoundError, ObjectNotFoundError
from psycopg.rows import DictRow
from pydantic import BaseModel, Field

from figranium_common.capture_models import capture_kind
from figranium_common.db import Pool
from figranium_common.nats import captures_store
from figranium_gateway.errors import ApiError
from figranium_gateway.routing import Router
from figranium_gateway.served_files import file_headers
from figranium_gateway.state import JS, POOL
from figranium_gateway.store import captures

api = Router("captures")

_CAPTURE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


def checked_name(name: str) -> str:
    """``name`` when it may name a capture; else ApiError 400 ``INVALID_NAME``."""
    # fullmatch: with match, "$" would also accept a trailing newline (%0A).
    if not _CAPTURE_NAME.fullmatch(name) or ".." in name:
        raise ApiError(400, "INVALID_NAME", "capture names are letters, digits, _ . : and -")
    return name


@api.get(
    "/captures/{name}",
    "A capture's file: PNG, JPEG and WebM inline, anything else as an attachment",
    responses={200: None, 400: None, 404: None},
    content_types={200: "application/octet-stream"},
)
async def get_capture(request: web.Request) -> web.Response:
    name = checked_name(request.match_info["name"])
    bucket = await captures_store(request.app[JS])
    try:
        found = await bucket.get(name)
    except (ObjectNotFoundError, NotFoundError):
        raise ApiError(404, "CAPTURE_NOT_FOUND", f"no capture {name!r}") from None
    return web.Response(body=found.data or b"", headers=file_headers(name))


class CaptureEntry(BaseModel):
    name: str
    url: str
    size: int
    modified: int | None = Field(description="epoch milliseconds, as Figranium sends it")
    type: Literal["screenshot", "recording"]


class CaptureList(BaseModel):
    captures: list[CaptureEntry]


class ScreenshotList(BaseModel):
    screenshots: list[CaptureEntry]


class _Listed(TypedDict):
    """A :class:`CaptureEntry` as listed."""

    name: str
    url: str
    size: int
    modified: int | None
    type: str


async def _list(request: web.Request, *, kinds: frozenset[str]) -> list[_Listed]:
    run_id = request.query.get("runId")
    if run_id is not None and not _CAPTURE_NAME.fullmatch(run_id):
        raise ApiError(400, "INVALID_QUERY", "runId is letters, digits, _ . : and -")
    return await listed_captures(request.app[POOL], run_id, kinds=kinds)


def listed(row: DictRow) -> _Listed:
    """A row of the captures index as the API lists it."""
    return {
        "name": row["name"],
        "url": f"/captures/{row['name']}",
        "size": row["size"],
        "modified": row["created_at"],
        "type": row["kind"],
    }


async def listed_captures(
    pool: Pool, run_id: str | None, *, kinds: frozenset[str]
) -> list[_Listed]:
    """The captures of these ``kinds`` (of the run ``run_id``, or all), newest first, from
    the bucket's index (``store.captures``). Downloads are listed with their run's result
    (``downloads``), not here: Figranium's clients know only screenshots and recordings
    in this list."""
    rows = await captures.newest(pool, kinds, execution_id=run_id)
    return [listed(row) for row in rows]


@api.get(
    "/api/data/captures",
    "Screenshots and recordings, newest first",
    query={"runId": "only this execution's captures"},
    responses={200: CaptureList, 400: None},
)
async def list_captures(request: web.Request) -> web.Response:
    kinds = frozenset({"screenshot", "recording"})
    return web.json_response({"captures": await _list(request, kinds=kinds)})


@api.get(
    "/api/data/screenshots",
    "Screenshots only, newest first",
    query={"runId": "only this execution's screenshots"},
    responses={200: ScreenshotList, 400: None},
)
async def list_screenshots(request: web.Request) -> web.Response:
    return web.json_response({"screenshots": await _list(request, kinds=frozenset({"screenshot"}))})


class Deleted(BaseModel):
    success: bool


class Cleared(BaseModel):
    success: bool
    removed: int


# Any characters (newlines and "/" included, raw or %-encoded) so that every odd name
# reaches the check and gets a clear 400 rather than a 404 from the router.
@api.delete(
    r"/api/data/captures/{name:[\s\S]+}",
    "Delete one capture",
    responses={200: Deleted, 400: None, 404: None},
)
async def delete_capture(request: web.Request) -> web.Response:
    await remove_capture(request.app, checked_name(request.match_info["name"]))
    return web.json_response(Deleted(success=True).model_dump())


async def remove_capture(app: web.Application, name: str) -> None:
    """Delete the capture ``name`` (checked) and its index row; ApiError 404 when there
    is neither."""
    bucket = await captures_store(app[JS])
    try:
        await bucket.delete(name)
        stored = True
    except (ObjectNotFoundError, NotFoundError):
        stored = False
    if not await captures.forget_names(app[POOL], [name]) and not stored:
        raise ApiError(404, "CAPTURE_NOT_FOUND", f"no capture {name!r}")


@api.post(
    "/api/data/clear-screenshots",
    "Delete every screenshot (recordings and downloads stay)",
    responses={200: Cleared},
)
async def clear_screenshots(request: web.Request) -> web.Response:
    bucket = await captures_store(request.app[JS])
    try:
        objects = await bucket.list()
    except NotFoundError:  # an empty bucket answers "not found"
        objects = []
    removed: list[str] = []
    for info in objects:
        name = info.name or ""
        if info.deleted or capture_kind(name) != "screenshot":
            continue
        try:
            await bucket.delete(name)
        except ObjectNotFoundError:  # deleted meanwhile
            continue
        removed.append(name)
    await captures.forget_names(request.app[POOL], removed)
    return web.json_response(Cleared(success=True, removed=len(removed)).model_dump())
