"""Zipping cabinet items into one archive item, and unzipping an archive item into a folder
(Figranium's ``POST /api/cabinets/:id/zip`` and ``…/items/:item/unzip``). A folder's
download as a ZIP is served with the other downloads (``cabinet_files``)."""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import BaseModel, Field, StrictStr

from figranium_common.cabinet_names import safe_name
from figranium_gateway import cabinet_archive_ops
from figranium_gateway.cabinet_schemas import MAX_ITEM_IDS, ItemOut
from figranium_gateway.errors import ApiError, found
from figranium_gateway.request_input import read_model
from figranium_gateway.routes.cabinet_files import item_not_found
from figranium_gateway.routes.cabinets import cabinet_not_found
from figranium_gateway.routing import Router
from figranium_gateway.state import CONFIG, JS, POOL
from figranium_gateway.store import cabinets
from figranium_gateway.store.cabinet_archives import items_in

api = Router("cabinets")

_REFUSALS: dict[int, type[BaseModel] | None] = {400: None, 404: None, 409: None, 413: None}


class ZipRequest(BaseModel):
    itemIds: list[StrictStr] = Field(
        default_factory=list,
        max_length=MAX_ITEM_IDS,
        description="items of the cabinet to zip (ids of other cabinets are ignored)",
    )
    name: StrictStr | None = Field(
        default=None,
        description="the archive's name (sanitised, made unique); archive-<epoch ms>.zip if"
        " left out",
    )


@api.post(
    "/api/cabinets/{cabinet_id}/zip",
    "Replace items by one ZIP file item holding them (a folder's files under its name);"
    " answers the new item",
    body=ZipRequest,
    responses={200: ItemOut, **_REFUSALS},
)
async def zip_items(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    body = await read_model(request, ZipRequest)
    pool = request.app[POOL]
    rows = found(await items_in(pool, cabinet_id, body.itemIds), cabinet_not_found(cabinet_id))
    if not rows:
        raise ApiError(400, "NO_ITEMS_SELECTED", "itemIds: select at least one item of the cabinet")
    name = safe_name(body.name or f"archive-{int(time.time() * 1000)}.zip")
    quotas = cabinets.Quotas.of(request.app[CONFIG])
    item = await cabinet_archive_ops.zip_items(pool, request.app[JS], rows, name, quotas)
    return web.json_response(item)


@api.post(
    "/api/cabinets/{cabinet_id}/items/{item_id}/unzip",
    "Replace a .zip file item by one folder item of its files, named after it; answers the"
    " folder. Unsafe entry names, links, and archives past the bounds are refused (400)",
    responses={200: ItemOut, **_REFUSALS},
)
async def unzip_item(request: web.Request) -> web.Response:
    item_id = request.match_info["item_id"]
    pool = request.app[POOL]
    row = await cabinets.get_item(pool, request.match_info["cabinet_id"], item_id)
    row = found(row, item_not_found(item_id))
    quotas = cabinets.Quotas.of(request.app[CONFIG])
    item = await cabinet_archive_ops.unzip_item(pool, request.app[JS], row, quotas)
    return web.json_response(item)
