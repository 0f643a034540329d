"""The console's captures gallery and its headful viewer page.

The gallery lists what ``GET /api/data/captures`` lists, from the same index, a page at
a time (a keyset cursor: each page is an index scan that stops after its rows), and
deletes as ``DELETE /api/data/captures/:name`` does. The viewer page shows
``GET /api/headful/status`` and opens noVNC with a ticket minted exactly as
``POST /api/headful/ticket`` mints one: the browser is sent to the viewer with the
ticket, never with the API key.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from aiohttp import web

from figranium_gateway.console.execution_pages import detail_url, shown_time
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.errors import ApiError
from figranium_gateway.routes.captures import checked_name, listed, remove_capture
from figranium_gateway.routes.headful import TicketBody, mint_ticket, status_of
from figranium_gateway.routing import Router
from figranium_gateway.state import HEADFUL, POOL
from figranium_gateway.store import captures

api = Router("console")

CAPTURES = "/console/captures"
HEADFUL_PAGE = "/console/headful"
PAGE_SIZE = 24
_KINDS = frozenset({"screenshot", "recording"})
# Captures a run took are named "<execution id>_agent_<time>…".
_RUN_MARK = "_agent_"
_PAGE = {200: "text/html", 400: "text/html"}


_BEFORE = re.compile(r"^([0-9]{1,15})_([A-Za-z0-9_.:-]{1,255})$")


def _page_url(before: str) -> str:
    return CAPTURES if not before else f"{CAPTURES}?{urlencode({'before': before})}"


def _cursor(raw: str) -> captures.Cursor | None:
    """The page's ``before`` cursor (``<ms>_<name>`` of the capture it starts after)."""
    if not raw:
        return None
    matched = _BEFORE.fullmatch(raw)
    if matched is None:
        raise ApiError(400, "INVALID_QUERY", "before is a cursor from this gallery's pages")
    return captures.Cursor(int(matched.group(1)), matched.group(2))


def _execution_of(name: str) -> str | None:
    """The execution a capture was taken by, from its name; None when it does not say."""
    mark = name.rfind(_RUN_MARK)
    return name[:mark] if mark > 0 else None


async def _gallery(
    request: web.Request, before: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    context: dict[str, object] = {
        "captures": [],
        "error": error,
        "before": before,
        "first_page": None,
        "next_page": None,
    }
    try:
        after = _cursor(before)
    except ApiError as exc:
        context["error"] = exc.details
        return render(request, "captures.html", context, status=400)
    # One more than a page: whether there is a next one.
    rows = await captures.newest(request.app[POOL], _KINDS, after=after, limit=PAGE_SIZE + 1)
    shown = []
    for row in rows[:PAGE_SIZE]:
        capture = listed(row)
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
    last = rows[PAGE_SIZE - 1] if len(rows) > PAGE_SIZE else None
    context.update(
        captures=shown,
        first_page=CAPTURES if after is not None else None,
        next_page=None if last is None else _page_url(f"{last['created_at']}_{last['name']}"),
    )
    return render(request, "captures.html", context, status=status)


@api.get(
    CAPTURES,
    "The console's gallery of captures (screenshots, recordings), newest first",
    query={
        "before": f"the page ({PAGE_SIZE} captures) after this capture, as the previous"
        " page's next link says (`<epoch ms>_<name>`)"
    },
    responses={200: None, 400: None},
    content_types=_PAGE,
)
async def capture_gallery(request: web.Request) -> web.Response:
    return await _gallery(request, request.query.get("before", ""))


@api.post(
    CAPTURES + "/{name}/delete",
    "Delete a capture (the console's form; as DELETE /api/data/captures/:name)",
    responses={303: None, 400: None, 403: None, 404: None},
    content_types={400: "text/html", 404: "text/html"},
)
async def delete_capture(request: web.Request) -> web.Response:
    form = await request.post()
    back = form.get("before")
    before = back if isinstance(back, str) else ""
    try:
        _cursor(before)
        await remove_capture(request.app, checked_name(request.match_info["name"]))
        return see_other(_page_url(before))
    except ApiError as exc:
        return await _gallery(request, before, error=exc.details, status=exc.status)


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
