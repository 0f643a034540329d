"""Saved proxies and how runs rotate through them, under ``/api/settings/proxies``.

Every route answers the whole list in Figranium's shape, ``{proxies, defaultProxyId,
includeDefaultInRotation, rotationMode}``, the host itself ("no proxy", id ``host``)
first. Passwords are stored sealed and never answered (``hasPassword`` says there is one).
Which proxy a run takes is decided when it is dispatched: ``figranium_common.proxy_choice``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_common.proxy_choice import HOST_ID, ROTATION_SETTING, Rotation, RotationMode
from figranium_common.runs import PROXIES_SETTING
from figranium_gateway.errors import ApiError, describe_validation_error
from figranium_gateway.proxy_input import (
    ImportedProxy,
    ProxyFields,
    entry_of,
    new_proxy,
    parse_text_entry,
    require_server,
    updated_proxy,
)
from figranium_gateway.request_input import read_json_object, read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import settings as settings_store

log = structlog.get_logger(__name__)
api = Router("settings")

MAX_IMPORT = 1000
_HOST_SERVER = "host_ip"
_HOST_LABEL = "Host IP (no proxy)"


class ProxyOut(BaseModel):
    id: str
    server: str
    username: str | None
    label: str | None
    default: bool
    hasPassword: bool
    isRotatingPool: bool
    estimatedPoolSize: int | None


class ProxyList(BaseModel):
    proxies: list[ProxyOut] = Field(description="the host (id host, no proxy) first")
    defaultProxyId: str = Field(description="host when no saved proxy is the default")
    includeDefaultInRotation: bool
    rotationMode: RotationMode


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


def _entry_id(entry: JsonMapping) -> str:
    """The entry's id; entries saved without one get a stable id derived from them."""
    if isinstance(entry.get("id"), str) and entry["id"]:
        return str(entry["id"])
    digest = hashlib.sha256(f"{entry.get('server')}\0{entry.get('username')}".encode())
    return "proxy_" + digest.hexdigest()[:12]


def _entries(stored: JsonValue) -> list[JsonObject]:
    if not isinstance(stored, list):
        return []
    return [
        {**entry, "id": _entry_id(entry)}
        for entry in stored
        if isinstance(entry, dict) and isinstance(entry.get("server"), str)
    ]


def _listing(entries: list[JsonObject], rotation: Rotation) -> JsonObject:
    default_id = next((entry["id"] for entry in entries if entry.get("default")), HOST_ID)
    host = ProxyOut(
        id=HOST_ID,
        server=_HOST_SERVER,
        username=None,
        label=_HOST_LABEL,
        default=default_id == HOST_ID,
        hasPassword=False,
        isRotatingPool=False,
        estimatedPoolSize=None,
    )
    saved = [
        ProxyOut(
            id=entry["id"],
            server=entry["server"],
            username=entry.get("username") or None,
            label=entry.get("label") or None,
            default=entry["id"] == default_id,
            hasPassword=bool(entry.get("password")),
            isRotatingPool=entry.get("isRotatingPool") is True,
            estimatedPoolSize=size
            if isinstance(size := entry.get("estimatedPoolSize"), int)
            else None,
        )
        for entry in entries
    ]
    return ProxyList(
        proxies=[host, *saved],
        defaultProxyId=default_id,
        includeDefaultInRotation=rotation.include_default,
        rotationMode=rotation.mode,
    ).model_dump()


async def _answer(request: web.Request) -> web.Response:
    values = await settings_store.get_settings(
        request.app[POOL], [PROXIES_SETTING, ROTATION_SETTING]
    )
    rotation = Rotation.from_stored(values.get(ROTATION_SETTING))
    return web.json_response(_listing(_entries(values.get(PROXIES_SETTING)), rotation))


async def _change(
    request: web.Request, change: Callable[[list[JsonObject]], list[JsonObject]]
) -> web.Response:
    """Replace the saved proxies with ``change(saved)`` atomically; answers the list."""
    await settings_store.update_setting(
        request.app[POOL], PROXIES_SETTING, lambda stored: change(_entries(stored))
    )
    return await _answer(request)


def _not_found(proxy_id: str) -> ApiError:
    return ApiError(404, "PROXY_NOT_FOUND", f"no proxy {proxy_id!r}")


def _saved_id(request: web.Request) -> str:
    proxy_id = request.match_info["proxy_id"]
    if proxy_id == HOST_ID:
        raise ApiError(400, "INVALID_ID", "host is the host itself, not a saved proxy")
    return proxy_id


@api.get(
    "/api/settings/proxies",
    "Saved proxies, the default and the rotation (passwords are never answered)",
    responses={200: ProxyList},
)
async def list_proxies(request: web.Request) -> web.Response:
    return await _answer(request)


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
        return await _choose_default(request, ProxyBody.model_validate(raw).defaultId)
    require_server(raw, "server")
    body = ProxyBody.model_validate(raw)
    added = new_proxy(await entry_of(body, "", request.app[CONFIG], request.app[BOX]), body.default)

    def add(entries: list[JsonObject]) -> list[JsonObject]:
        if body.default:
            entries = [{**entry, "default": False} for entry in entries]
        return [*entries, added]

    response = await _change(request, add)
    log.info("settings.proxy_added", proxy_id=added["id"])
    return response


@api.post(
    "/api/settings/proxies/import",
    "Add many proxies; one whose server is saved already replaces it",
    body=ImportBody,
    responses={200: ProxyList, 400: None},
)
async def import_proxies(request: web.Request) -> web.Response:
    items = (await read_json_object(request)).get("proxies")
    if not isinstance(items, list) or not items:
        raise ApiError(400, "MISSING_PROXIES", "proxies: a non-empty list of proxies")
    if len(items) > MAX_IMPORT:
        raise ApiError(400, "TOO_MANY_PROXIES", f"proxies: at most {MAX_IMPORT} at once")
    imported = []
    for index, item in enumerate(items):
        where = f"proxies[{index}]"
        raw = parse_text_entry(item, where) if isinstance(item, str) else item
        if not isinstance(raw, dict):
            raise ApiError(400, "INVALID_BODY", f"{where}: a proxy object or text")
        require_server(raw, f"{where}.server", ("server", "url", "proxy"))
        try:
            fields = ImportedProxy.model_validate(raw)
        except ValidationError as exc:
            raise ApiError(
                400, "INVALID_BODY", f"{where}.{describe_validation_error(exc)}"
            ) from None
        imported.append(await entry_of(fields, f"{where}.", request.app[CONFIG], request.app[BOX]))

    def merge(entries: list[JsonObject]) -> list[JsonObject]:
        by_server: dict[str, JsonObject] = {}
        for entry in entries:
            by_server.setdefault(str(entry["server"]).lower(), entry)
        replaced: dict[str, JsonObject] = {}
        added: dict[str, JsonObject] = {}
        for entry in imported:
            key = str(entry["server"]).lower()
            saved = by_server.get(key)
            if saved is None:
                added.setdefault(key, new_proxy(entry))
            elif str(saved["id"]) not in replaced:
                replaced[str(saved["id"])] = updated_proxy(saved, entry)
        kept = [replaced.get(str(entry["id"]), entry) for entry in entries]
        return kept + list(added.values())

    response = await _change(request, merge)
    log.info("settings.proxies_imported", count=len(imported))
    return response


@api.put(
    "/api/settings/proxies/{proxy_id}",
    "Replace a saved proxy's fields (its password only when one is sent)",
    body=ProxyFields,
    responses={200: ProxyList, 400: None, 404: None},
)
async def update_proxy(request: web.Request) -> web.Response:
    proxy_id = _saved_id(request)
    raw = await read_json_object(request)
    require_server(raw, "server")
    fields = ProxyFields.model_validate(raw)
    entry = await entry_of(fields, "", request.app[CONFIG], request.app[BOX])

    def update(entries: list[JsonObject]) -> list[JsonObject]:
        if proxy_id not in {saved["id"] for saved in entries}:
            raise _not_found(proxy_id)
        return [updated_proxy(e, entry) if e["id"] == proxy_id else e for e in entries]

    return await _change(request, update)


@api.delete(
    "/api/settings/proxies/{proxy_id}",
    "Delete a saved proxy",
    responses={200: ProxyList, 400: None, 404: None},
)
async def delete_proxy(request: web.Request) -> web.Response:
    proxy_id = _saved_id(request)

    def remove(entries: list[JsonObject]) -> list[JsonObject]:
        kept = [entry for entry in entries if entry["id"] != proxy_id]
        if len(kept) == len(entries):
            raise _not_found(proxy_id)
        return kept

    return await _change(request, remove)


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
    return await _change(request, lambda entries: [e for e in entries if e["id"] not in ids])


async def _choose_default(request: web.Request, chosen: str | None) -> web.Response:
    wanted = None if chosen in (None, "", HOST_ID) else chosen

    def choose(entries: list[JsonObject]) -> list[JsonObject]:
        if wanted is not None and wanted not in {entry["id"] for entry in entries}:
            raise _not_found(wanted)
        return [{**entry, "default": entry["id"] == wanted} for entry in entries]

    return await _change(request, choose)


@api.post(
    "/api/settings/proxies/default",
    "Choose the proxy every run goes through (host, null or empty: none)",
    body=DefaultBody,
    responses={200: ProxyList, 400: None, 404: None},
)
async def set_default_proxy(request: web.Request) -> web.Response:
    return await _choose_default(request, (await read_model(request, DefaultBody)).id)


@api.post(
    "/api/settings/proxies/rotation",
    "How tasks with rotateProxies rotate: in turn or at random, with the default or not",
    body=RotationBody,
    responses={200: ProxyList, 400: None},
)
async def set_rotation(request: web.Request) -> web.Response:
    body = await read_model(request, RotationBody)

    def change(stored: JsonValue) -> JsonObject:
        current = Rotation.from_stored(stored)
        include = body.includeDefaultInRotation
        return Rotation(
            include_default=current.include_default if include is None else include,
            mode=body.rotationMode or current.mode,
        ).stored()

    await settings_store.update_setting(request.app[POOL], ROTATION_SETTING, change)
    return await _answer(request)
