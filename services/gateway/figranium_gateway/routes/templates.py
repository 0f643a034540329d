"""Figranium's task templates: ``/api/templates`` over the configured catalogue.

Without ``TEMPLATES_CATALOG_URL`` every route answers 501 ``TEMPLATES_UNAVAILABLE``: the
hosted catalogue Figranium reads is not this server's to call. With one, the routes answer
as Figranium's do: the whole list without a query, a page of card summaries with one,
a preset by its id.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel

from figranium_common.jsontypes import GivenObject, JsonObject, JsonValue
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.routing import Router
from figranium_gateway.state import TEMPLATES
from figranium_gateway.templates_catalog import CatalogError, TemplateCatalog, TemplateNotFound

api = Router("templates")

_TEMPLATE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
SORTS = ("popular", "newest", "name")
_QUERY = {
    "limit": "with any query: a page of summaries, 1-24 (default 12)",
    "offset": "where the page starts (default 0)",
    "sort": "popular (downloads), newest or name",
    "category": "only this category (default all)",
    "search": "text in the title, description, author, category or target URL",
}
_ERRORS: dict[int, type[BaseModel] | None] = {400: ErrorBody, 501: ErrorBody, 502: ErrorBody}


class TemplatePage(BaseModel):
    items: list[GivenObject]
    total: int


class ImportRecorded(BaseModel):
    success: bool
    counted: bool


def _catalog(request: web.Request) -> TemplateCatalog:
    catalog = request.app[TEMPLATES]
    if not catalog.configured:
        raise ApiError(
            501,
            "TEMPLATES_UNAVAILABLE",
            "no template catalogue is configured: set TEMPLATES_CATALOG_URL to one in"
            " Figranium's format",
        )
    return catalog


def _upstream(exc: CatalogError) -> ApiError:
    return ApiError(502, exc.code, exc.details)


def _template_id(request: web.Request) -> str:
    template_id = request.match_info["template_id"]
    if not _TEMPLATE_ID.fullmatch(template_id):
        raise ApiError(400, "INVALID_TEMPLATE_ID", "a template id is a UUID")
    return template_id


def _whole_number(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "INVALID_TEMPLATE_QUERY", f"{name}: a whole number") from None


def _summary(preset: JsonObject) -> JsonObject:
    """A card: the preset without its workflow and readme, with its number of actions."""
    configuration = preset.get("configuration")
    actions: JsonValue = None
    if isinstance(configuration, dict):
        actions = configuration.get("actions")
        tasks = configuration.get("tasks")
        if not isinstance(actions, list) and isinstance(tasks, list) and tasks:
            first = tasks[0]
            actions = first.get("actions") if isinstance(first, dict) else None
    kept = {
        k: v for k, v in preset.items() if k not in ("configuration", "readme", "expected_output")
    }
    return {**kept, "action_count": len(actions) if isinstance(actions, list) else 0}


def _text(preset: JsonObject, field: str) -> str:
    value = preset.get(field)
    return value if isinstance(value, str) else ""


def _page(presets: list[JsonObject], request: web.Request) -> TemplatePage:
    query = request.query
    limit = _whole_number(query.get("limit", "12"), "limit")
    offset = _whole_number(query.get("offset", "0"), "offset")
    sort = query.get("sort") or "popular"
    category = query.get("category") or "all"
    search = (query.get("search") or "").strip().lower()
    if not 1 <= limit <= 24 or offset < 0 or sort not in SORTS:
        raise ApiError(
            400,
            "INVALID_TEMPLATE_QUERY",
            f"limit 1-24, offset from 0, sort one of {', '.join(SORTS)}",
        )
    if len(category) > 60 or len(search) > 100:
        raise ApiError(400, "INVALID_TEMPLATE_QUERY", "category or search is too long")
    fields = ("title", "description", "author_name", "category", "target_url")
    matches = [
        preset
        for preset in presets
        if (category == "all" or preset.get("category") == category)
        and search in " ".join(_text(preset, field) for field in fields).lower()
    ]
    if sort == "name":
        matches.sort(key=lambda p: _text(p, "title"))
    elif sort == "newest":
        matches.sort(key=lambda p: _text(p, "title"))
        matches.sort(key=lambda p: _text(p, "created_at") or _text(p, "updated_at"), reverse=True)
    else:
        matches.sort(key=lambda p: (-_downloads(p), _text(p, "title")))
    chosen = matches[offset : offset + limit]
    return TemplatePage(items=[_summary(p) for p in chosen], total=len(matches))


def _downloads(preset: JsonObject) -> float:
    value = preset.get("downloads")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@api.get(
    "/api/templates",
    "The template catalogue: every preset without a query, a page of summaries with one",
    query=_QUERY,
    responses={200: TemplatePage, **_ERRORS},
)
async def list_templates(request: web.Request) -> web.Response:
    catalog = _catalog(request)
    try:
        presets = await catalog.presets()
    except CatalogError as exc:
        raise _upstream(exc) from None
    # The key may come as ?key=: it is no query of the catalogue's.
    if not any(name != "key" for name in request.query):
        return web.json_response(presets)
    page = _page(presets, request)
    return web.json_response(page.model_dump(), headers={"Cache-Control": "private, max-age=60"})


async def _preset(request: web.Request) -> JsonObject:
    catalog = _catalog(request)
    template_id = _template_id(request)
    try:
        return await catalog.preset(template_id)
    except TemplateNotFound as exc:
        raise ApiError(404, exc.code, exc.details) from None
    except CatalogError as exc:
        raise _upstream(exc) from None


@api.get(
    "/api/templates/{template_id}",
    "One template with its configuration (the task) and readme",
    responses={200: None, 404: ErrorBody, **_ERRORS},
)
async def get_template(request: web.Request) -> web.Response:
    preset = await _preset(request)
    return web.json_response(preset, headers={"Cache-Control": "private, max-age=60"})


@api.post(
    "/api/templates/{template_id}/import",
    "Acknowledge that a template was imported (the catalogue's download count is not told)",
    responses={200: ImportRecorded, 404: ErrorBody, **_ERRORS},
)
async def record_import(request: web.Request) -> web.Response:
    await _preset(request)  # an import of a template the catalogue does not have is a 404
    return web.json_response(ImportRecorded(success=True, counted=False).model_dump())
