"""Figranium's cookie routes over the tasks' saved browser states.

Figranium keeps one shared browser state; here each task keeps its own (its cookies carry
from one of its runs to the next). ``GET /api/data/cookies`` answers them all in
Figranium's shape, each entry with its ``taskId``, values masked (``cookie_view``);
deleting a cookie removes it from every task's state (or one task's, with ``taskId``);
clearing removes every saved state. Figranium serves these under ``/api`` too.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.jsontypes import GivenObject, JsonObject, JsonValue, StorageState
from figranium_gateway.cookie_view import masked_cookies, masked_origins
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, POOL
from figranium_gateway.store import browser_state

api = Router("cookies")

PREFIXES = ("/api/data", "/api")


class CookieList(BaseModel):
    cookies: list[GivenObject] = Field(description="values masked; each with its taskId")
    origins: list[GivenObject] = Field(description="local storage, values masked")


class DeleteCookieBody(BaseModel):
    name: str
    domain: str | None = Field(default=None, description="only the cookie of this domain")
    path: str | None = Field(default=None, description="only the cookie of this path")
    taskId: str | None = Field(default=None, description="only in this task's state")


class Removed(BaseModel):
    success: bool
    removed: int


def _optional_text(raw: JsonObject, name: str) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, "INVALID_BODY", f"{name}: a text")
    return value


async def list_cookies(request: web.Request) -> web.Response:
    task_id = request.query.get("taskId") or None
    states = await browser_state.saved_states(request.app[POOL], request.app[BOX], task_id)
    cookies: list[JsonValue] = []
    origins: list[JsonValue] = []
    for saved in states:
        cookies.extend(masked_cookies(saved.state, saved.task_id))
        origins.extend(masked_origins(saved.state, saved.task_id))
    return web.json_response({"cookies": cookies, "origins": origins})


async def delete_cookie(request: web.Request) -> web.Response:
    raw = await read_json_object(request)
    name = _optional_text(raw, "name")
    if name is None:
        raise ApiError(400, "MISSING_NAME", "name: the cookie's name")
    domain, path = _optional_text(raw, "domain"), _optional_text(raw, "path")
    task_id = _optional_text(raw, "taskId")
    removed = 0

    def without(state: StorageState) -> StorageState | None:
        nonlocal removed
        cookies = state.get("cookies") or []
        kept = [
            cookie
            for cookie in cookies
            if cookie.get("name") != name
            or (domain is not None and cookie.get("domain") != domain)
            or (path is not None and cookie.get("path") != path)
        ]
        if len(kept) == len(cookies):
            return None
        removed += len(cookies) - len(kept)
        return {**state, "cookies": kept}

    await browser_state.change_states(request.app[POOL], request.app[BOX], without, task_id)
    return web.json_response({"success": True, "removed": removed})


async def clear_cookies(request: web.Request) -> web.Response:
    removed = await browser_state.clear_states(request.app[POOL])
    return web.json_response({"success": True, "removed": removed})


for _prefix in PREFIXES:
    api.get(
        f"{_prefix}/cookies",
        "Every task's saved cookies and local storage (values masked)",
        query={"taskId": "only this task's"},
        responses={200: CookieList},
    )(list_cookies)
    api.post(
        f"{_prefix}/cookies/delete",
        "Delete a cookie (by name, and domain and path when given) from the saved states",
        body=DeleteCookieBody,
        responses={200: Removed, 400: ErrorBody},
    )(delete_cookie)
    api.post(
        f"{_prefix}/clear-cookies",
        "Forget every task's saved cookies and local storage",
        responses={200: Removed},
    )(clear_cookies)
