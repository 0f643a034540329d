"""The console's cabinets: the list with each one's size against the quotas, a cabinet's
items with their downloads, and plain forms to create and delete cabinets, upload files
and delete items.

Every change goes through the cabinet API's own functions (``cabinet_name``,
``add_cabinet``, ``remove_cabinet``, ``remove_items``, ``upload_into``), so the console
keeps the same names, quotas and refusals. An upload is a multipart form whose first field
is the CSRF token (see ``multipart_forms``).
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from multidict import MultiMapping

from figranium_common.jsontypes import JsonObject
from figranium_gateway.cabinet_schemas import CabinetDeletion, CabinetName
from figranium_gateway.console.execution_pages import detail_url, shown_time
from figranium_gateway.console.rendering import missing, render, see_other
from figranium_gateway.errors import ApiError
from figranium_gateway.routes.cabinet_files import upload_into
from figranium_gateway.routes.cabinets import (
    add_cabinet,
    cabinet_name,
    remove_cabinet,
    remove_items,
)
from figranium_gateway.routing import Router
from figranium_gateway.state import CONFIG, POOL
from figranium_gateway.store import cabinets

api = Router("console")

CABINETS = "/console/cabinets"
_CABINET = CABINETS + "/{cabinet_id}"
_FORM_ANSWERS: dict[int, None] = {303: None, 400: None, 403: None, 404: None}
_PAGES = {200: "text/html", 400: "text/html", 404: "text/html", 413: "text/html"}


def cabinet_url(cabinet_id: str) -> str:
    return f"{CABINETS}/{quote(cabinet_id, safe='')}"


def _share(used: int, limit: int) -> int:
    """``used`` as a whole percentage of ``limit``."""
    return min(100, round(100 * used / limit)) if limit > 0 else 0


def _field(form: MultiMapping[object], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _list_page(
    request: web.Request, *, error: str | None = None, name: str = "", status: int = 200
) -> web.Response:
    listing = await cabinets.list_cabinets(request.app[POOL])
    sizes = await cabinets.sizes(request.app[POOL])
    quotas = cabinets.Quotas.of(request.app[CONFIG])
    rows = listing["cabinets"]
    assert isinstance(rows, list)
    shown = []
    for row in rows:
        assert isinstance(row, dict)
        size = sizes.get(str(row["id"]), 0)
        shown.append(
            {
                **row,
                "href": cabinet_url(str(row["id"])),
                "size": size,
                "share": _share(size, quotas.cabinet),
            }
        )
    total = sum(sizes.values())
    context = {
        "cabinets": shown,
        "quotas": quotas,
        "total": total,
        "total_share": _share(total, quotas.total),
        "error": error,
        "name": name,
    }
    return render(request, "cabinets.html", context, status=status)


@api.get(
    CABINETS,
    "The console's cabinets: each one's items and size against the quotas",
    responses={200: None},
    content_types={200: "text/html"},
)
async def cabinet_list(request: web.Request) -> web.Response:
    return await _list_page(request)


@api.post(
    CABINETS,
    "Create a cabinet from the console's form (named as POST /api/cabinets names it)",
    responses={**_FORM_ANSWERS},
    content_types={400: "text/html"},
)
async def create_cabinet(request: web.Request) -> web.Response:
    typed = _field(await request.post(), "name")
    try:
        created = await add_cabinet(request.app[POOL], cabinet_name(CabinetName(name=typed)))
    except ApiError as exc:
        return await _list_page(request, error=exc.details, name=typed, status=exc.status)
    return see_other(cabinet_url(str(created["id"])))


def _missing(request: web.Request, cabinet_id: str) -> web.Response:
    return missing(request, "cabinets", cabinet_id)


async def _cabinet(request: web.Request, cabinet_id: str) -> JsonObject | None:
    async with request.app[POOL].connection() as conn:
        return await cabinets.get_cabinet(conn, cabinet_id)


async def _folder_paths(request: web.Request, cabinet_id: str, item_id: str) -> list[str]:
    row = await cabinets.get_item(request.app[POOL], cabinet_id, item_id)
    entries = [] if row is None else row["entries"] or []
    return sorted(str(entry["path"]) for entry in entries)


async def _cabinet_page(
    request: web.Request, cabinet_id: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    cabinet = await _cabinet(request, cabinet_id)
    items = await cabinets.list_items(request.app[POOL], cabinet_id)
    if cabinet is None or items is None:
        return _missing(request, cabinet_id)
    here = cabinet_url(cabinet_id)
    shown = []
    for item in items:
        item_id = quote(str(item["id"]), safe="")
        run = item["sourceRunId"]
        shown.append(
            {
                **item,
                "created": shown_time(item["createdAt"]),
                "download": f"/api/cabinets/{quote(cabinet_id, safe='')}/items/{item_id}/download",
                "delete_action": f"{here}/items/{item_id}/delete",
                "run_href": detail_url(run) if isinstance(run, str) else None,
                "paths": (
                    await _folder_paths(request, cabinet_id, str(item["id"]))
                    if item["kind"] == "folder"
                    else []
                ),
            }
        )
    context = {"cabinet": cabinet, "items": shown, "action": here, "error": error}
    return render(request, "cabinet.html", context, status=status)


@api.get(
    _CABINET,
    "The console's page of a cabinet: its items, downloads, and an upload form",
    responses={200: None, 404: None},
    content_types=_PAGES,
)
async def cabinet_page(request: web.Request) -> web.Response:
    return await _cabinet_page(request, request.match_info["cabinet_id"])


@api.post(
    _CABINET + "/items",
    "Upload a file from the console's form (multipart, the CSRF token its first field);"
    " stored and refused as POST /api/cabinets/:id/items does",
    responses={**_FORM_ANSWERS, 413: None},
    content_types=_PAGES,
)
async def upload_file(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    try:
        await upload_into(request, cabinet_id)
    except ApiError as exc:
        return await _cabinet_page(request, cabinet_id, error=exc.details, status=exc.status)
    return see_other(cabinet_url(cabinet_id))


@api.post(
    _CABINET + "/items/{item_id}/delete",
    "Delete an item and its bytes (the console's form; as DELETE /api/cabinets/:id/items)",
    responses={**_FORM_ANSWERS},
    content_types={404: "text/html"},
)
async def delete_item(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    try:
        await remove_items(request.app, cabinet_id, [request.match_info["item_id"]])
    except ApiError:
        return _missing(request, cabinet_id)
    return see_other(cabinet_url(cabinet_id))


async def _delete_page(
    request: web.Request, cabinet_id: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    cabinet = await _cabinet(request, cabinet_id)
    if cabinet is None:
        return _missing(request, cabinet_id)
    listing = await cabinets.list_cabinets(request.app[POOL])
    others = listing["cabinets"]
    assert isinstance(others, list)
    context = {
        "cabinet": cabinet,
        "targets": [c for c in others if isinstance(c, dict) and c["id"] != cabinet_id],
        "default_id": listing["defaultCabinetId"],
        "action": cabinet_url(cabinet_id) + "/delete",
        "cancel": cabinet_url(cabinet_id),
        "error": error,
    }
    return render(request, "delete_cabinet.html", context, status=status)


@api.get(
    _CABINET + "/delete",
    "The console's confirmation before deleting a cabinet: where its items and tasks go",
    responses={200: None, 404: None},
    content_types=_PAGES,
)
async def confirm_delete(request: web.Request) -> web.Response:
    return await _delete_page(request, request.match_info["cabinet_id"])


@api.post(
    _CABINET + "/delete",
    "Delete a cabinet (the console's confirmed form, fields targetCabinetId and mode; as"
    " DELETE /api/cabinets/:id)",
    responses={**_FORM_ANSWERS},
    content_types={400: "text/html", 404: "text/html"},
)
async def delete_cabinet(request: web.Request) -> web.Response:
    cabinet_id = request.match_info["cabinet_id"]
    form = await request.post()
    body = CabinetDeletion(
        targetCabinetId=_field(form, "targetCabinetId") or None, mode=_field(form, "mode") or None
    )
    try:
        await remove_cabinet(request.app, cabinet_id, body)
    except ApiError as exc:
        if exc.status == 404:
            return _missing(request, cabinet_id)
        return await _delete_page(request, cabinet_id, error=exc.details, status=exc.status)
    return see_other(CABINETS)
