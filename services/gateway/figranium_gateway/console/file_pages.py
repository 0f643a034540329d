"""The console's captures gallery and its headful viewer page.

The gallery lists what ``GET /api/data/captures`` lists (``listed_captures``), a page at
a time, and deletes as ``DELETE /api/data/captures/:name`` does. The viewer page shows
``GET /api/headful/status`` and opens noVNC with a ticket minted exactly as
``POST /api/headful/ticket`` mints one: the browser is sent to the viewer with the
ticket, never with the API key.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from figranium_gateway.console.execution_pages import detail_url, shown_time
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.errors import ApiError
from figranium_gateway.routes.captures import checked_name, listed_captures, remove_capture
from figranium_gateway.routes.headful import TicketBody, mint_ticket, status_of
from figranium_gateway.routing import Router
from figranium_gateway.state import HEADFUL, JS

api = Router("console")

CAPTURES = "/console/captures"
HEADFUL_PAGE = "/console/headful"
PAGE_SIZE = 24
_KINDS = frozenset({"screenshot", "recording"})
# Captures a run took are named "<execution id>_agent_<time>…".
_RUN_MARK = "_agent_"
_PAGE = {200: "text/html", 400: "text/html"}


def _page_url(page: int) -> str:
    return CAPTURES if page == 1 else f"{CAPTURES}?page={page}"


def _page_number(raw: str) -> int:
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "INVALID_QUERY", "page must be a whole number from 1")
    return int(raw)


def _execution_of(name: str) -> str | None:
    """The execution a capture was taken by, from its name; None when it does not say."""
    mark = name.rfind(_RUN_MARK)
    return name[:mark] if mark > 0 else None


async def _gallery(
    request: web.Request, raw_page: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    context: dict[str, object] = {
        "captures": [],
        "error": error,
        "page": 1,
        "total": 0,
        "previous_page": None,
        "next_page": None,
    }
    try:
        page = _page_number(raw_page)
    except ApiError as exc:
        context["error"] = exc.details
        return render(request, "captures.html", context, status=400)
    listed = await listed_captures(request.app[JS], None, kinds=_KINDS)
    start = (page - 1) * PAGE_SIZE
    shown = []
    for capture in listed[start : start + PAGE_SIZE]:
        execution_id = _execution_of(capture["name"])
        shown.append(
            {
                **capture,
                "taken": shown_time(capture["modified"]),
                "execution_id": execution_id,
                "execution_href": None if execution_id is None else detail_url(execution_id),
                "delete_action": f"{CAPTURES}/{quote(capture['name'], safe='')}/delete",
            }
        )
    context.update(
        captures=shown,
        page=page,
        total=len(listed),
        previous_page=_page_url(page - 1) if page > 1 else None,
        next_page=_page_url(page + 1) if start + PAGE_SIZE < len(listed) else None,
    )
    return render(request, "captures.html", context, status=status)


@api.get(
    CAPTURES,
    "The console's gallery of captures (screenshots, recordings), newest first",
    query={"page": f"the page ({PAGE_SIZE} captures each), from 1"},
    responses={200: None, 400: None},
    content_types=_PAGE,
)
async def capture_gallery(request: web.Request) -> web.Response:
    return await _gallery(request, request.query.get("page", ""))


@api.post(
    CAPTURES + "/{name}/delete",
    "Delete a capture (the console's form; as DELETE /api/data/captures/:name)",
    responses={303: None, 400: None, 403: None, 404: None},
    content_types={400: "text/html", 404: "text/html"},
)
async def delete_capture(request: web.Request) -> web.Response:
    form = await request.post()
    back = form.get("page")
    raw_page = back if isinstance(back, str) else ""
    try:
        await remove_capture(request.app[JS], checked_name(request.match_info["name"]))
        return see_other(_page_url(_page_number(raw_page)))
    except ApiError as exc:
        return await _gallery(request, raw_page, error=exc.details, status=exc.status)


async def _viewer_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    headful = status_of(request.app[HEADFUL].runners())
    runners = [
        {**runner.model_dump(), "started": shown_time(runner.startedAt)}
        for runner in headful.runners
    ]
    context = {"status": headful, "runners": runners, "error": error}
    return render(request, "headful.html", context, status=status)


@api.get(
    HEADFUL_PAGE,
    "The console's headful page: the runners and their sessions, and a way to watch one",
    responses={200: None},
    content_types={200: "text/html"},
)
async def headful_page(request: web.Request) -> web.Response:
    return await _viewer_page(request)


@api.post(
    HEADFUL_PAGE + "/open",
    "Open the noVNC viewer on a headful session: a ticket minted as POST /api/headful/ticket"
    " does, and a redirect to the viewer carrying it (form fields executionId, control)",
    responses={303: None, 403: None, 404: None, 503: None},
    content_types={404: "text/html", 503: "text/html"},
)
async def open_viewer(request: web.Request) -> web.Response:
    form = await request.post()
    execution_id = form.get("executionId")
    body = TicketBody(
        executionId=execution_id if isinstance(execution_id, str) and execution_id else None,
        control="control" in form,
    )
    try:
        ticket = await mint_ticket(request.app, body)
    except ApiError as exc:
        return await _viewer_page(request, error=exc.details, status=exc.status)
    return see_other(ticket.url)
