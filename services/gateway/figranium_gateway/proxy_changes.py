"""The saved proxies and their rotation, read and changed: the one path the API's proxy
routes (``routes.proxies``) and the console's proxy pages share, so both check, store and
answer alike.

Every change answers the whole list in Figranium's shape, ``{proxies, defaultProxyId,
includeDefaultInRotation, rotationMode}``, the host itself ("no proxy", id ``host``)
first. Passwords are stored sealed and never answered (``hasPassword`` says there is one).
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
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import settings as settings_store

log = structlog.get_logger(__name__)

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


async def listing(app: web.Application) -> JsonObject:
    """The saved proxies, the default and the rotation, as every route answers them."""
    values = await settings_store.get_settings(app[POOL], [PROXIES_SETTING, ROTATION_SETTING])
    rotation = Rotation.from_stored(values.get(ROTATION_SETTING))
    return _listing(_entries(values.get(PROXIES_SETTING)), rotation)


async def _change(
    app: web.Application, change: Callable[[list[JsonObject]], list[JsonObject]]
) -> JsonObject:
    """Replace the saved proxies with ``change(saved)`` atomically; the new listing."""
    await settings_store.update_setting(
        app[POOL], PROXIES_SETTING, lambda stored: change(_entries(stored))
    )
    return await listing(app)


def _not_found(proxy_id: str) -> ApiError:
    return ApiError(404, "PROXY_NOT_FOUND", f"no proxy {proxy_id!r}")


def saved_id(proxy_id: str) -> str:
    """``proxy_id``, refused (400 ``INVALID_ID``) when it names the host itself."""
    if proxy_id == HOST_ID:
        raise ApiError(400, "INVALID_ID", "host is the host itself, not a saved proxy")
    return proxy_id


async def add(app: web.Application, fields: ProxyFields, default: bool) -> JsonObject:
    """Save a new proxy (the default one when ``default``); the new listing."""
    added = new_proxy(await entry_of(fields, "", app[CONFIG], app[BOX]), default)

    def add_to(entries: list[JsonObject]) -> list[JsonObject]:
        if default:
            entries = [{**entry, "default": False} for entry in entries]
        return [*entries, added]

    answer = await _change(app, add_to)
    log.info("settings.proxy_added", proxy_id=added["id"])
    return answer


def _where(index: int) -> str:
    return f"proxies[{index}]"


async def import_items(
    app: web.Application, items: JsonValue, where: Callable[[int], str] = _where
) -> JsonObject:
    """Save each of ``items`` (objects or text entries); one whose server is saved already
    replaces it. ``where(index)`` names an item in errors. The new listing."""
    if not isinstance(items, list) or not items:
        raise ApiError(400, "MISSING_PROXIES", "proxies: a non-empty list of proxies")
    if len(items) > MAX_IMPORT:
        raise ApiError(400, "TOO_MANY_PROXIES", f"proxies: at most {MAX_IMPORT} at once")
    imported = []
    for index, item in enumerate(items):
        named = where(index)
        raw = parse_text_entry(item, named) if isinstance(item, str) else item
        if not isinstance(raw, dict):
            raise ApiError(400, "INVALID_BODY", f"{named}: a proxy object or text")
        require_server(raw, f"{named}.server", ("server", "url", "proxy"))
        try:
            fields = ImportedProxy.model_validate(raw)
        except ValidationError as exc:
            raise ApiError(
                400, "INVALID_BODY", f"{named}.{describe_validation_error(exc)}"
            ) from None
        imported.append(await entry_of(fields, f"{named}.", app[CONFIG], app[BOX]))

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

    answer = await _change(app, merge)
    log.info("settings.proxies_imported", count=len(imported))
    return answer


async def update(app: web.Application, proxy_id: str, raw: JsonObject) -> JsonObject:
    """Replace a saved proxy's fields with ``raw``'s (its password only when ``raw`` has
    one: None or empty removes it); the new listing."""
    proxy_id = saved_id(proxy_id)
    require_server(raw, "server")
    fields = ProxyFields.model_validate(raw)
    entry = await entry_of(fields, "", app[CONFIG], app[BOX])

    def update_in(entries: list[JsonObject]) -> list[JsonObject]:
        if proxy_id not in {saved["id"] for saved in entries}:
            raise _not_found(proxy_id)
        return [updated_proxy(e, entry) if e["id"] == proxy_id else e for e in entries]

    return await _change(app, update_in)


async def delete(app: web.Application, proxy_id: str) -> JsonObject:
    """Delete one saved proxy (404 when there is none of that id); the new listing."""
    proxy_id = saved_id(proxy_id)

    def remove(entries: list[JsonObject]) -> list[JsonObject]:
        kept = [entry for entry in entries if entry["id"] != proxy_id]
        if len(kept) == len(entries):
            raise _not_found(proxy_id)
        return kept

    return await _change(app, remove)


async def delete_many(app: web.Application, ids: set[str]) -> JsonObject:
    """Delete the saved proxies of ``ids`` (ids not saved are ignored); the new listing."""
    return await _change(app, lambda entries: [e for e in entries if e["id"] not in ids])


async def choose_default(app: web.Application, chosen: str | None) -> JsonObject:
    """Make ``chosen`` the default proxy (None, empty or host: none); the new listing."""
    wanted = None if chosen in (None, "", HOST_ID) else chosen

    def choose(entries: list[JsonObject]) -> list[JsonObject]:
        if wanted is not None and wanted not in {entry["id"] for entry in entries}:
            raise _not_found(wanted)
        return [{**entry, "default": entry["id"] == wanted} for entry in entries]

    return await _change(app, choose)


async def set_rotation(
    app: web.Application, include_default: bool | None, mode: RotationMode | None
) -> JsonObject:
    """Change how tasks with rotateProxies rotate (None keeps a value); the new listing."""

    def change(stored: JsonValue) -> JsonObject:
        current = Rotation.from_stored(stored)
        return Rotation(
            include_default=current.include_default if include_default is None else include_default,
            mode=mode or current.mode,
        ).stored()

    await settings_store.update_setting(app[POOL], ROTATION_SETTING, change)
    return await listing(app)
