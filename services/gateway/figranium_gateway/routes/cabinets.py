"""Cabinets (Figranium's named file stores) and their items' metadata: listing, naming,
deleting, and marking items uploaded. Items' bytes are served and received in
``cabinet_files``."""

from __future__ import annotations

from aiohttp import web

from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject
from figranium_gateway.cabinet_cleanup import delete_objects_logged
from figranium_gateway.cabinet_schemas import (
    CabinetDeletion,
    CabinetList,
    CabinetName,
    CabinetOut,
    ItemList,
    ItemSelection,
    StatusChange,
    Success,
)
from figranium_gateway.errors import ApiError, found
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import JS, POOL
from figranium_gateway.store import cabinets

api = Router("cabinets")

_CABINET = "/api/cabinets/{cabinet_id}"


def cabinet_not_found(cabinet_id: str) -> ApiError:
    return ApiError(404, "CABINET_NOT_FOUND", f"no cabinet {cabinet_id!r}")


def _name_taken(name: str) -> ApiError:
    # 400 as Figranium answers it.
    return ApiError(400, "CABINET_NAME_TAKEN", f"a cabinet already has the name {name!r}")


async def _cabinet_name(request: web.Request) -> str:
    return cabinet_name(await read_model(request, CabinetName))


def cabinet_name(given: CabinetName) -> str:
    """The name as kept (trimmed, cut); ApiError 400 when nothing is left of it."""
    name = given.cleaned()
    if not name:
        raise ApiError(400, "INVALID_BODY", "name: a cabinet name is required")
    return name


async def add_cabinet(pool: Pool, name: str) -> JsonObject:
    """A new cabinet named ``name``; ApiError 400 when another has that name."""
    try:
        return await cabinets.create_cabinet(pool, name)
    except cabinets.NameTaken:
        raise _name_taken(name) from None


@api.get("/api/cabinets", "Every cabinet, oldest first", responses={200: CabinetList})
async def list_cabinets(request: web.Request) -> web.Response:
    return web.json_response(await cabinets.list_cabinets(request.app[POOL]))


@api.post(
    "/api/cabinets",
    "Create a cabinet",
    body=CabinetName,
    responses={201: CabinetOut, 400: None},
)
async def create_cabinet(request: web.Request) -> web.Response:
    created = await add_cabinet(request.app[POOL], await _cabinet_name(request))
    return web.json_response(created, status=201)


@api.patch(
    _CABINET,
    "Rename a cabinet",
    body=CabinetName,
    responses={200: CabinetOut, 400: None, 404: None},
)
async def rename_cabinet(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    name = await _cabinet_name(request)
    try:
        renamed = await cabinets.rename_cabinet(request.app[POOL], cabinet_id, name)
    except cabinets.NameTaken:
        raise _name_taken(name) from None
    return web.json_response(found(renamed, cabinet_not_found(cabinet_id)))


@api.delete(
    _CABINET,
    'Delete a cabinet: its items move to targetCabinetId (mode "migrate") or are deleted,'
    " and tasks (and their versions) that named it name the target instead",
    body=CabinetDeletion,
    responses={200: CabinetList, 400: None, 404: None},
)
async def delete_cabinet(request: web.Request) -> web.Response:
    body = await read_model(request, CabinetDeletion)
    await remove_cabinet(request.app, request.match_info["cabinet_id"], body)
    return web.json_response(await cabinets.list_cabinets(request.app[POOL]))


async def remove_cabinet(app: web.Application, cabinet_id: str, body: CabinetDeletion) -> None:
    """Delete the cabinet as ``body`` says (its items moved or deleted with their bytes);
    ApiError 400 when refused, 404 when there is no such cabinet."""
    if not body.targetCabinetId:
        raise ApiError(400, "INVALID_BODY", "targetCabinetId: name the replacement cabinet")
    try:
        doomed = await cabinets.delete_cabinet(
            app[POOL], cabinet_id, body.targetCabinetId, migrate=body.mode == "migrate"
        )
    except cabinets.CabinetRefused as exc:
        raise ApiError(400, "CABINET_NOT_DELETED", str(exc)) from None
    if doomed is None:
        raise cabinet_not_found(cabinet_id)
    await delete_objects_logged(app[JS], doomed)


@api.get(
    f"{_CABINET}/items",
    "A cabinet's items, newest first",
    responses={200: ItemList, 404: None},
)
async def list_items(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    items = await cabinets.list_items(request.app[POOL], cabinet_id)
    return web.json_response({"items": found(items, cabinet_not_found(cabinet_id))})


@api.patch(
    f"{_CABINET}/items/status",
    "Mark items uploaded or unuploaded; answers those changed (ids not in the cabinet are ignored)",
    body=StatusChange,
    responses={200: ItemList, 400: None, 404: None},
)
async def set_status(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    body = await read_model(request, StatusChange)
    items = await cabinets.set_status(request.app[POOL], cabinet_id, body.itemIds, body.status)
    return web.json_response({"items": found(items, cabinet_not_found(cabinet_id))})


async def _remove(request: web.Request, item_ids: list[str] | None) -> web.Response:
    await remove_items(request.app, request.match_info["cabinet_id"], item_ids)
    return web.json_response(Success(success=True).model_dump())


async def remove_items(app: web.Application, cabinet_id: str, item_ids: list[str] | None) -> None:
    """Delete those of ``item_ids`` in the cabinet (None: all) and their bytes; ApiError
    404 when there is no such cabinet."""
    doomed = await cabinets.delete_items(app[POOL], cabinet_id, item_ids)
    await delete_objects_logged(app[JS], found(doomed, cabinet_not_found(cabinet_id)))


@api.delete(
    f"{_CABINET}/items",
    "Delete items and their bytes (ids not in the cabinet are ignored)",
    body=ItemSelection,
    responses={200: Success, 400: None, 404: None},
)
async def delete_items(request: web.Request) -> web.Response:
    return await _remove(request, (await read_model(request, ItemSelection)).itemIds)


@api.post(
    f"{_CABINET}/clear",
    "Delete every item of a cabinet, and their bytes",
    responses={200: Success, 404: None},
)
async def clear_cabinet(request: web.Request) -> web.Response:
    return await _remove(request, None)
