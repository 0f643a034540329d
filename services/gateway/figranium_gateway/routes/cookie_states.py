"""Figranium's ``/api/cookie-states``: named browser states, here the tasks' own.

Figranium keeps named states that tasks choose with ``cookieStateId``. Each task here has
exactly one state, so a cookie state *is* a task's saved state: its id is the task's id,
its name the task's name. Listing, reading (values masked), replacing (an import of
cookies for a task) and deleting work as Figranium's; creating one needs the ``taskId``
it belongs to, and renaming is refused (the name is the task's).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from figranium_common.jsontypes import GivenObject, JsonObject, StorageState
from figranium_gateway.cookie_view import counts, masked_state
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, POOL
from figranium_gateway.store import browser_state
from figranium_gateway.store.browser_state import SavedState

api = Router("cookies")


class CookieIn(BaseModel):
    """A cookie as Playwright takes it."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    value: str
    domain: str = Field(min_length=1)
    path: str = "/"
    expires: float = -1
    httpOnly: bool = False
    secure: bool = False
    sameSite: Literal["Lax", "None", "Strict"] = "Lax"


class StorageEntryIn(BaseModel):
    name: str
    value: str


class OriginIn(BaseModel):
    origin: str = Field(min_length=1)
    localStorage: list[StorageEntryIn] = Field(default_factory=list)


class StateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cookies: list[CookieIn]
    origins: list[OriginIn] = Field(default_factory=list)


class CookieStateOut(BaseModel):
    id: str = Field(description="the task's id")
    name: str = Field(description="the task's name")
    taskId: str
    updatedAt: str | None
    cookies: int
    origins: int


class CookieStateList(BaseModel):
    states: list[CookieStateOut]


class CookieStateBody(BaseModel):
    taskId: str = Field(description="the task whose saved state this becomes")
    state: GivenObject = Field(description="{cookies, origins} as Playwright writes them")
    name: str | None = None


class Deleted(BaseModel):
    ok: bool


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _public(saved: SavedState) -> JsonObject:
    cookies, origins = counts(saved.state)
    return CookieStateOut(
        id=saved.task_id,
        name=saved.task_name or saved.task_id,
        taskId=saved.task_id,
        updatedAt=_iso(saved.updated_at),
        cookies=cookies,
        origins=origins,
    ).model_dump()


def _not_found(state_id: str) -> ApiError:
    return ApiError(404, "COOKIE_STATE_NOT_FOUND", f"no saved browser state {state_id!r}")


def _state(raw: JsonObject) -> StorageState:
    """The body's state, checked as Playwright would take it; expired cookies dropped."""
    given = raw.get("state")
    if not isinstance(given, dict) or not isinstance(given.get("cookies"), list):
        raise ApiError(400, "COOKIE_STATE_REQUIRED", "state: {cookies: [...], origins: [...]}")
    try:
        state = StateIn.model_validate(given)
    except ValidationError as exc:
        where = "; ".join(
            f"state.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ApiError(400, "INVALID_COOKIE_STATE", where) from None
    now = time.time()
    dumped = state.model_dump()
    dumped["cookies"] = [c for c in dumped["cookies"] if c["expires"] == -1 or c["expires"] > now]
    result: StorageState = dumped  # type: ignore[assignment]
    return result


async def _one(request: web.Request, state_id: str) -> SavedState:
    found = await browser_state.saved_states(request.app[POOL], request.app[BOX], state_id)
    if not found:
        raise _not_found(state_id)
    return found[0]


@api.get("/api/cookie-states", "Every task's saved browser state", responses={200: CookieStateList})
async def list_states(request: web.Request) -> web.Response:
    states = await browser_state.saved_states(request.app[POOL], request.app[BOX])
    return web.json_response({"states": [_public(saved) for saved in states]})


@api.get(
    "/api/cookie-states/{state_id}",
    "One task's saved browser state, values masked",
    responses={200: None, 404: ErrorBody},
)
async def get_state(request: web.Request) -> web.Response:
    saved = await _one(request, request.match_info["state_id"])
    return web.json_response({**_public(saved), "state": masked_state(saved.state, saved.task_id)})


@api.post(
    "/api/cookie-states",
    "Set a task's saved browser state (an import of cookies for it); 201",
    body=CookieStateBody,
    responses={201: CookieStateOut, 400: ErrorBody, 404: ErrorBody},
)
async def create_state(request: web.Request) -> web.Response:
    raw = await read_json_object(request)
    state = _state(raw)
    task_id = raw.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise ApiError(
            400,
            "TASK_ID_REQUIRED",
            "taskId: each task has its own browser state here; name the task it is for",
        )
    if not await browser_state.put_state(request.app[POOL], request.app[BOX], task_id, state):
        raise ApiError(404, "TASK_NOT_FOUND", f"no task {task_id!r}")
    return web.json_response(_public(await _one(request, task_id)), status=201)


@api.patch(
    "/api/cookie-states/{state_id}",
    "Replace a task's saved browser state ({state}); renaming is refused",
    responses={200: CookieStateOut, 400: ErrorBody, 404: ErrorBody},
)
async def update_state(request: web.Request) -> web.Response:
    state_id = request.match_info["state_id"]
    raw = await read_json_object(request)
    if "state" not in raw:
        raise ApiError(
            400,
            "COOKIE_STATE_NAME_FIXED",
            "a saved browser state is named after its task: rename the task instead",
        )
    state = _state(raw)
    await _one(request, state_id)
    await browser_state.put_state(request.app[POOL], request.app[BOX], state_id, state)
    return web.json_response(_public(await _one(request, state_id)))


@api.delete(
    "/api/cookie-states/{state_id}",
    "Forget a task's saved browser state (its next run starts clean)",
    responses={200: Deleted, 404: ErrorBody},
)
async def delete_state(request: web.Request) -> web.Response:
    state_id = request.match_info["state_id"]
    if not await browser_state.delete_state(request.app[POOL], state_id):
        raise _not_found(state_id)
    return web.json_response({"ok": True})
