"""Settings: the API key and the selector finder mode (proxies: ``routes.proxies``)."""

from __future__ import annotations

import re
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

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
from figranium_gateway.state import AUTH, CONFIG, NC, POOL
from figranium_gateway.store import console_sessions
from figranium_gateway.store import settings as settings_store

log = structlog.get_logger(__name__)
api = Router("settings")

MAX_API_KEY_LENGTH = 512  # as Figranium
# Keys travel in headers, so only what a header can carry unchanged: visible ASCII.
_API_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")
SELECTOR_FINDER_SETTING = "selector_finder"


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
    # Sessions are tied to the key they were opened with anyway; this removes their rows.
    ended = await console_sessions.end_all_sessions(request.app[POOL])
    log.warning(
        "auth.api_key_changed",
        generated=not wanted,
        auth_source=cache.source,
        console_sessions_ended=ended,
    )
    return web.json_response(ApiKeyOut(apiKey=new_key).model_dump())


# --- selector finder ------------------------------------------------------------------


SelectorFinderMode = Literal["highlight", "ai"]


class SelectorFinder(BaseModel):
    selectorFinder: SelectorFinderMode


class SelectorFinderBody(BaseModel):
    """The seed's ``{selectorFinder}``; ``{mode}``, this field's earlier name, is also read."""

    selectorFinder: SelectorFinderMode | None = None
    mode: SelectorFinderMode | None = Field(default=None, description="older name")


def _chosen_finder(body: SelectorFinderBody) -> SelectorFinderMode:
    chosen = body.selectorFinder or body.mode
    if chosen is None:
        raise ApiError(400, "MISSING_FIELDS", 'selectorFinder: required, "highlight" or "ai"')
    return chosen


@api.get(
    "/api/settings/selector-finder",
    "How the editor finds selectors (default highlight)",
    responses={200: SelectorFinder},
)
async def get_selector_finder(request: web.Request) -> web.Response:
    stored = await settings_store.get_setting(request.app[POOL], SELECTOR_FINDER_SETTING)
    mode = stored.get("mode") if isinstance(stored, dict) else None
    out = SelectorFinder(selectorFinder=mode if mode in ("highlight", "ai") else "highlight")
    return web.json_response(out.model_dump())


@api.post(
    "/api/settings/selector-finder",
    "Choose how the editor finds selectors",
    body=SelectorFinderBody,
    responses={200: SelectorFinder, 400: None},
)
async def set_selector_finder(request: web.Request) -> web.Response:
    chosen = _chosen_finder(await read_model(request, SelectorFinderBody))
    await settings_store.set_setting(request.app[POOL], SELECTOR_FINDER_SETTING, {"mode": chosen})
    return web.json_response(SelectorFinder(selectorFinder=chosen).model_dump())
