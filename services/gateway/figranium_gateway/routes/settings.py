"""Settings: the API key and the selector finder mode (proxies: ``routes.proxies``)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.db import Pool
from figranium_gateway.api_key import ApiKeyCache
from figranium_gateway.api_key_change import (
    check_key_length,
    check_key_text,
    refuse_environment_key,
    replace_api_key,
)
from figranium_gateway.auth import header_keys, query_keys
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import AUTH, POOL
from figranium_gateway.store import settings as settings_store

api = Router("settings")

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
    refuse_environment_key(request.app)
    body = await read_model(request, ApiKeyBody)
    wanted = (body.apiKey or "").strip()
    check_key_text(wanted)
    if wanted and not await _authenticated_outside_body(request, request.app[AUTH]):
        wanted = ""  # the body's apiKey was the credential, not a new key
    check_key_length(wanted)
    new_key = await replace_api_key(request.app, wanted)
    return web.json_response(ApiKeyOut(apiKey=new_key).model_dump())


# --- selector finder ------------------------------------------------------------------


SelectorFinderMode = Literal["highlight", "ai"]


class SelectorFinder(BaseModel):
    selectorFinder: SelectorFinderMode


class SelectorFinderBody(BaseModel):
    """The seed's ``{selectorFinder}``; ``{mode}``, this field's earlier name, is also read."""

    selectorFinder: SelectorFinderMode | None = None
    mode: SelectorFinderMode | None = Field(default=None, description="older name")


def chosen_finder(body: SelectorFinderBody) -> SelectorFinderMode:
    chosen = body.selectorFinder or body.mode
    if chosen is None:
        raise ApiError(400, "MISSING_FIELDS", 'selectorFinder: required, "highlight" or "ai"')
    return chosen


async def stored_finder(pool: Pool) -> SelectorFinderMode:
    """The stored mode; highlight when none (or an unknown one) is stored."""
    stored = await settings_store.get_setting(pool, SELECTOR_FINDER_SETTING)
    mode = stored.get("mode") if isinstance(stored, dict) else None
    return "ai" if mode == "ai" else "highlight"


async def store_finder(pool: Pool, chosen: SelectorFinderMode) -> None:
    await settings_store.set_setting(pool, SELECTOR_FINDER_SETTING, {"mode": chosen})


@api.get(
    "/api/settings/selector-finder",
    "How the editor finds selectors (default highlight)",
    responses={200: SelectorFinder},
)
async def get_selector_finder(request: web.Request) -> web.Response:
    out = SelectorFinder(selectorFinder=await stored_finder(request.app[POOL]))
    return web.json_response(out.model_dump())


@api.post(
    "/api/settings/selector-finder",
    "Choose how the editor finds selectors",
    body=SelectorFinderBody,
    responses={200: SelectorFinder, 400: None},
)
async def set_selector_finder(request: web.Request) -> web.Response:
    chosen = chosen_finder(await read_model(request, SelectorFinderBody))
    await store_finder(request.app[POOL], chosen)
    return web.json_response(SelectorFinder(selectorFinder=chosen).model_dump())
