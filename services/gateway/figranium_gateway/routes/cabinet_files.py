"""Cabinet items' bytes: a file item downloaded (streamed from the cabinets bucket), and a
file uploaded into a cabinet from outside (our own addition to Figranium's API)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from nats.js.errors import NotFoundError, ObjectNotFoundError
from psycopg.rows import DictRow

from figranium_common.jsontypes import JsonObject
from figranium_common.nats import CABINETS_BUCKET, read_object
from figranium_gateway.cabinet_archive_ops import folder_zip
from figranium_gateway.cabinet_schemas import ItemOut
from figranium_gateway.cabinet_uploads import file_part, store_upload
from figranium_gateway.errors import ApiError, found
from figranium_gateway.routes.cabinets import cabinet_not_found
from figranium_gateway.routing import Router
from figranium_gateway.served_files import DOWNLOAD_TYPE, attachment
from figranium_gateway.state import CONFIG, JS, POOL
from figranium_gateway.store import cabinets

api = Router("cabinets")


def item_not_found(item_id: str) -> ApiError:
    return ApiError(404, "ITEM_NOT_FOUND", f"no item {item_id!r} in this cabinet")


def download_headers(filename: str) -> dict[str, str]:
    """Always an attachment of an inert type: items come from pages nobody here controls."""
    return {
        "Content-Type": DOWNLOAD_TYPE,
        "Content-Disposition": attachment(filename),
        "X-Content-Type-Options": "nosniff",
    }


async def serve_file(request: web.Request, row: DictRow) -> web.StreamResponse:
    """A file item's bytes, chunk by chunk as the client takes them."""
    chunks = read_object(request.app[JS], CABINETS_BUCKET, row["object"])
    return await _send(request, row, chunks, row["name"], row["size"])


async def _send(
    request: web.Request,
    row: DictRow,
    chunks: AsyncIterator[bytes],
    filename: str,
    size: int | None,
) -> web.StreamResponse:
    """``chunks`` as an attachment named ``filename``; a 404 when the first one's object
    is gone, before anything is sent."""
    try:
        first = await anext(chunks, b"")
    except (ObjectNotFoundError, NotFoundError):
        raise ApiError(404, "ITEM_NOT_FOUND", f"item {row['id']!r} has no stored bytes") from None
    response = web.StreamResponse(headers=download_headers(filename))
    response.content_length = size
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def serve_folder(request: web.Request, row: DictRow) -> web.StreamResponse:
    """A folder item, as a ZIP of its files under the folder's name, made as it is sent."""
    return await _send(request, row, folder_zip(request.app[JS], row), f"{row['name']}.zip", None)


@api.get(
    "/api/cabinets/{cabinet_id}/items/{item_id}/download",
    "An item's bytes as an attachment: a file as it is, a folder as a ZIP",
    responses={200: None, 400: None, 404: None},
    content_types={200: "application/octet-stream"},
)
async def download_item(request: web.Request) -> web.StreamResponse:
    item_id = request.match_info["item_id"]
    row = await cabinets.get_item(request.app[POOL], request.match_info["cabinet_id"], item_id)
    row = found(row, item_not_found(item_id))
    if row["kind"] == "folder":
        return await serve_folder(request, row)
    return await serve_file(request, row)


@api.post(
    "/api/cabinets/{cabinet_id}/items",
    "Upload a file into a cabinet (multipart/form-data; the first part with a filename is"
    " the file, named after it, made unique). Over a quota: 413, nothing stored",
    responses={201: ItemOut, 400: None, 404: None, 413: None},
)
async def upload_item(request: web.Request) -> web.Response:
    item = await upload_into(request, request.match_info["cabinet_id"])
    return web.json_response(item, status=201)


async def upload_into(request: web.Request, cabinet_id: str) -> JsonObject:
    """Store the request's file part as a new item of the cabinet; answers the item
    (ApiError 404 for an unknown cabinet, 400 without a file, 413 over a quota)."""
    pool = request.app[POOL]
    async with pool.connection() as conn:
        found(await cabinets.get_cabinet(conn, cabinet_id), cabinet_not_found(cabinet_id))
    part = await file_part(request)
    quotas = cabinets.Quotas.of(request.app[CONFIG])
    return await store_upload(pool, request.app[JS], cabinet_id, part, quotas)
