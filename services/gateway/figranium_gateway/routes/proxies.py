"""Saved proxies and how runs rotate through them, under ``/api/settings/proxies``.

Every route answers the whole list in Figranium's shape (``proxy_changes.ProxyList``),
the host itself ("no proxy", id ``host``) first; passwords are never answered. The
checks and changes are ``proxy_changes``', shared with the console. Which proxy a run
takes is decided when it is dispatched: ``figranium_common.proxy_choice``.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.proxy_choice import RotationMode
from figranium_gateway import proxy_changes
from figranium_gateway.errors import ApiError
from figranium_gateway.proxy_changes import MAX_IMPORT, ProxyList
from figranium_gateway.proxy_input import ImportedProxy, ProxyFields, require_server
from figranium_gateway.request_input import read_json_object, read_model
from figranium_gateway.routing import Router

api = Router("settings")


class ProxyBody(ProxyFields):
    """Add a proxy (``server`` and the rest), or choose the default (``defaultId`` alone)."""

    default: bool = False
    defaultId: str | None = Field(
        default=None, description="make this proxy the default; null clears the default"
    )


class ImportBody(BaseModel):
    proxies: list[str | ImportedProxy] = Field(
        description="objects, URLs (credentials may be in them) or host:port:username:password",
        max_length=MAX_IMPORT,
    )


class IdsBody(BaseModel):
    ids: list[str]


class DefaultBody(BaseModel):
    id: str | None = Field(default=None, description="a saved proxy; null, empty or host: none")


class RotationBody(BaseModel):
    includeDefaultInRotation: bool | None = None
    rotationMode: RotationMode | None = None


def _proxy_id(request: web.Request) -> str:
    return request.match_info["proxy_id"]


@api.get(
    "/api/settings/proxies",
    "Saved proxies, the default and the rotation (passwords are never answered)",
    responses={200: ProxyList},
)
async def list_proxies(request: web.Request) -> web.Response:
    return web.json_response(await proxy_changes.listing(request.app))


@api.post(
    "/api/settings/proxies",
    "Add a proxy, or choose the default one with defaultId",
    body=ProxyBody,
    responses={200: ProxyList, 400: None, 404: None},
)
async def add_proxy(request: web.Request) -> web.Response:
    raw = await read_json_object(request)
    if "defaultId" in raw:
        if "server" in raw:
            raise ApiError(400, "INVALID_BODY", "defaultId: send either server or defaultId")
        chosen = ProxyBody.model_validate(raw).defaultId
        return web.json_response(await proxy_changes.choose_default(request.app, chosen))
    require_server(raw, "server")
    body = ProxyBody.model_validate(raw)
    return web.json_response(await proxy_changes.add(request.app, body, body.default))


@api.post(
    "/api/settings/proxies/import",
    "Add many proxies; one whose server is saved already replaces it",
    body=ImportBody,
    responses={200: ProxyList, 400: None},
)
async def import_proxies(request: web.Request) -> web.Response:
    items = (await read_json_object(request)).get("proxies")
    return web.json_response(await proxy_changes.import_items(request.app, items))


@api.put(
    "/api/settings/proxies/{proxy_id}",
    "Replace a saved proxy's fields (its password only when one is sent)",
    body=ProxyFields,
    responses={200: ProxyList, 400: None, 404: None},
)
async def update_proxy(request: web.Request) -> web.Response:
    proxy_id = proxy_changes.saved_id(_proxy_id(request))
    raw = await read_json_object(request)
    return web.json_response(await proxy_changes.update(request.app, proxy_id, raw))


@api.delete(
    "/api/settings/proxies/{proxy_id}",
    "Delete a saved proxy",
    responses={200: ProxyList, 400: None, 404: None},
)
async def delete_proxy(request: web.Request) -> web.Response:
    return web.json_response(await proxy_changes.delete(request.app, _proxy_id(request)))


@api.delete(
    "/api/settings/proxies",
    "Delete the saved proxies listed in ids (ids not saved are ignored)",
    body=IdsBody,
    responses={200: ProxyList, 400: None},
)
async def delete_proxies(request: web.Request) -> web.Response:
    raw = await read_json_object(request)
    if not isinstance(raw.get("ids"), list) or not raw["ids"]:
        raise ApiError(400, "MISSING_IDS", "ids: a non-empty list of proxy ids")
    ids = set(IdsBody.model_validate(raw).ids)
    return web.json_response(await proxy_changes.delete_many(request.app, ids))


@api.post(
    "/api/settings/proxies/default",
    "Choose the proxy every run goes through (host, null or empty: none)",
    body=DefaultBody,
    responses={200: ProxyList, 400: None, 404: None},
)
async def set_default_proxy(request: web.Request) -> web.Response:
    chosen = (await read_model(request, DefaultBody)).id
    return web.json_response(await proxy_changes.choose_default(request.app, chosen))


@api.post(
    "/api/settings/proxies/rotation",
    "How tasks with rotateProxies rotate: in turn or at random, with the default or not",
    body=RotationBody,
    responses={200: ProxyList, 400: None},
)
async def set_rotation(request: web.Request) -> web.Response:
    body = await read_model(request, RotationBody)
    answer = await proxy_changes.set_rotation(
        request.app, body.includeDefaultInRotation, body.rotationMode
    )
    return web.json_response(answer)
