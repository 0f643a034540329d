"""Settings: the API key, the selector finder mode, saved proxies."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_common.models import now_ms
from figranium_common.queue import PROXY_PASSWORD
from figranium_common.runs import PROXIES_SETTING
from figranium_gateway.api_key import (
    API_KEY_SETTING,
    MIN_API_KEY_LENGTH,
    ApiKeyCache,
    announce,
)
from figranium_gateway.auth import generate_api_key, header_keys, query_keys
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import AUTH, BOX, CONFIG, NC, POOL
from figranium_gateway.store import settings as settings_store
from figranium_gateway.validation import check_outbound

log = structlog.get_logger(__name__)
api = Router("settings")

MAX_API_KEY_LENGTH = 512  # as Figranium
# Keys travel in headers, so only what a header can carry unchanged: visible ASCII.
_API_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")
SELECTOR_FINDER_SETTING = "selector_finder"
PROXY_SCHEMES = ("http", "https", "socks5")


# --- API key --------------------------------------------------------------------------


class ApiKeyBody(BaseModel):
    apiKey: str | None = Field(
        default=None,
        description="the new key; taken only when the request authenticated another way"
        " (header or query), since a body apiKey is otherwise the credential itself."
        " 24 to 512 visible ASCII characters. Empty or absent: a key is generated.",
    )


class ApiKeyOut(BaseModel):
    apiKey: str


async def _authenticated_outside_body(request: web.Request, cache: ApiKeyCache) -> bool:
    current = await cache.current()
    if current is None:  # authentication is off: the body's key cannot be a credential
        return True
    return cache.hasher.matches(current, header_keys(request) + query_keys(request))


@api.post(
    "/api/settings/api-key",
    "Set or generate the API key; the old key stops working on every replica",
    body=ApiKeyBody,
    responses={200: ApiKeyOut, 400: None, 409: None},
)
async def set_api_key(request: web.Request) -> web.Response:
    if request.app[CONFIG].api_key:
        raise ApiError(
            409,
            "API_KEY_FROM_ENVIRONMENT",
            "the API key comes from FIGRANIUM_API_KEY, which always wins over a stored key;"
            " change the variable and restart the gateways instead",
        )
    body = await read_model(request, ApiKeyBody)
    cache = request.app[AUTH]
    wanted = (body.apiKey or "").strip()
    if len(wanted) > MAX_API_KEY_LENGTH:
        raise ApiError(
            400, "API_KEY_TOO_LONG", f"apiKey is at most {MAX_API_KEY_LENGTH} characters"
        )
    if wanted and not _API_KEY_CHARS.match(wanted):
        raise ApiError(
            400, "INVALID_BODY", "apiKey: only visible ASCII characters (it is sent as a header)"
        )
    if wanted and not await _authenticated_outside_body(request, cache):
        wanted = ""  # the body's apiKey was the credential, not a new key
    if wanted and len(wanted) < MIN_API_KEY_LENGTH:
        raise ApiError(
            400, "API_KEY_TOO_SHORT", f"apiKey is at least {MIN_API_KEY_LENGTH} characters"
        )
    new_key = wanted or generate_api_key()
    await settings_store.set_setting(
        request.app[POOL], API_KEY_SETTING, cache.hasher.digest(new_key)
    )
    if cache.source == "stored":
        cache.changed_here(new_key)
    await announce(request.app[NC], API_KEY_SETTING)
    log.warning("auth.api_key_changed", generated=not wanted, auth_source=cache.source)
    return web.json_response(ApiKeyOut(apiKey=new_key).model_dump())


# --- selector finder ------------------------------------------------------------------


class SelectorFinder(BaseModel):
    mode: Literal["highlight", "ai"]


@api.get(
    "/api/settings/selector-finder",
    "How the editor finds selectors (default highlight)",
    responses={200: SelectorFinder},
)
async def get_selector_finder(request: web.Request) -> web.Response:
    stored = await settings_store.get_setting(request.app[POOL], SELECTOR_FINDER_SETTING)
    mode = stored.get("mode") if isinstance(stored, dict) else None
    out = SelectorFinder(mode=mode if mode in ("highlight", "ai") else "highlight")
    return web.json_response(out.model_dump())


@api.post(
    "/api/settings/selector-finder",
    "Choose how the editor finds selectors",
    body=SelectorFinder,
    responses={200: SelectorFinder, 400: None},
)
async def set_selector_finder(request: web.Request) -> web.Response:
    chosen = await read_model(request, SelectorFinder)
    await settings_store.set_setting(
        request.app[POOL], SELECTOR_FINDER_SETTING, chosen.model_dump()
    )
    return web.json_response(chosen.model_dump())


# --- proxies --------------------------------------------------------------------------


class ProxyBody(BaseModel):
    """Add a proxy (``server`` and the rest), or choose the default (``defaultId`` alone)."""

    server: str | None = Field(default=None, description="http://, https:// or socks5://host:port")
    username: str | None = None
    password: str | None = Field(default=None, description="stored, never answered")
    label: str | None = None
    default: bool = False
    defaultId: str | None = Field(
        default=None, description="make this proxy the default; null clears the default"
    )


class ProxyOut(BaseModel):
    id: str
    server: str
    username: str | None
    label: str | None
    default: bool
    hasPassword: bool


class ProxyList(BaseModel):
    proxies: list[ProxyOut]


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


def _listing(entries: list[JsonObject]) -> JsonObject:
    proxies = [
        ProxyOut(
            id=entry["id"],
            server=entry["server"],
            username=entry.get("username") or None,
            label=entry.get("label") or None,
            default=bool(entry.get("default")),
            hasPassword=bool(entry.get("password")),
        )
        for entry in entries
    ]
    return ProxyList(proxies=proxies).model_dump()


async def _checked_server(raw: str, *, allow_private: bool, allow_metadata: bool = False) -> str:
    server = raw.strip()
    try:
        parts = urlsplit(server)
        host, _port = parts.hostname, parts.port  # .port refuses a malformed port
    except ValueError as exc:
        raise ApiError(400, "INVALID_BODY", f"server: not a valid URL ({exc})") from None
    scheme, _, rest = server.partition(":")
    if scheme.lower() not in PROXY_SCHEMES:
        raise ApiError(
            400, "INVALID_BODY", "server: must start with http://, https:// or socks5://"
        )
    if not host:
        raise ApiError(400, "INVALID_BODY", "server: has no host")
    if parts.username is not None or parts.password is not None:
        # Inside the URL they would be answered by GET; they have their own fields.
        raise ApiError(400, "INVALID_BODY", "server: put credentials in username and password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ApiError(400, "INVALID_BODY", "server: only scheme, host and port")
    # The same outbound rules as every other URL the platform connects to (SSRF), on the
    # text as given: Chromium reads it too, and a backslash or "%" could make it another host.
    await check_outbound(
        f"http:{rest}", "server", allow_private=allow_private, allow_metadata=allow_metadata
    )
    return server.rstrip("/")


@api.get(
    "/api/settings/proxies",
    "Saved proxies (passwords are never answered)",
    responses={200: ProxyList},
)
async def list_proxies(request: web.Request) -> web.Response:
    stored = await settings_store.get_setting(request.app[POOL], PROXIES_SETTING)
    return web.json_response(_listing(_entries(stored)))


@api.post(
    "/api/settings/proxies",
    "Add a proxy, or choose the default one with defaultId",
    body=ProxyBody,
    responses={200: ProxyList, 400: None, 404: None},
)
async def add_proxy(request: web.Request) -> web.Response:
    body = await read_model(request, ProxyBody)
    if "defaultId" in body.model_fields_set:
        if body.server is not None:
            raise ApiError(400, "INVALID_BODY", "defaultId: send either server or defaultId")
        chosen = body.defaultId

        def choose(stored: JsonValue) -> list[JsonObject]:
            entries = _entries(stored)
            if chosen is not None and chosen not in {entry["id"] for entry in entries}:
                raise ApiError(404, "PROXY_NOT_FOUND", f"no proxy {chosen!r}")
            return [{**entry, "default": entry["id"] == chosen} for entry in entries]

        saved = await settings_store.update_setting(request.app[POOL], PROXIES_SETTING, choose)
        return web.json_response(_listing(saved))

    if body.server is None or not body.server.strip():
        raise ApiError(400, "INVALID_BODY", "server: required (or defaultId to choose a default)")
    server = await _checked_server(
        body.server,
        allow_private=request.app[CONFIG].allow_private_networks,
        allow_metadata=request.app[CONFIG].allow_metadata_address,
    )
    # The keys the runner reads (server, username, password) stay as dispatch expects them.
    added: JsonObject = {"id": f"proxy_{now_ms()}_{secrets.token_hex(4)}", "server": server}
    for name in ("username", "label"):
        value = getattr(body, name)
        if value:
            added[name] = value
    if body.password:
        added["password"] = request.app[BOX].seal(body.password, PROXY_PASSWORD)
    added["default"] = body.default

    def add(stored: JsonValue) -> list[JsonObject]:
        entries = _entries(stored)
        if body.default:
            entries = [{**entry, "default": False} for entry in entries]
        return [*entries, added]

    saved = await settings_store.update_setting(request.app[POOL], PROXIES_SETTING, add)
    log.info("settings.proxy_added", proxy_id=added["id"])
    return web.json_response(_listing(saved))


@api.delete(
    "/api/settings/proxies/{proxy_id}",
    "Delete a saved proxy",
    responses={200: ProxyList, 404: None},
)
async def delete_proxy(request: web.Request) -> web.Response:
    proxy_id = request.match_info["proxy_id"]

    def remove(stored: JsonValue) -> list[JsonObject]:
        entries = _entries(stored)
        kept = [entry for entry in entries if entry["id"] != proxy_id]
        if len(kept) == len(entries):
            raise ApiError(404, "PROXY_NOT_FOUND", f"no proxy {proxy_id!r}")
        return kept

    saved = await settings_store.update_setting(request.app[POOL], PROXIES_SETTING, remove)
    return web.json_response(_listing(saved))
