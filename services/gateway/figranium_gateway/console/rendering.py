"""Rendering a console page: the template, the CSRF token its forms carry, the cookie."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp_jinja2
from aiohttp import web

from figranium_gateway.console import csrf
from figranium_gateway.console.gate import session_of
from figranium_gateway.console.sessions import CSRF_COOKIE, set_cookie


def render(
    request: web.Request, template: str, context: Mapping[str, object], *, status: int = 200
) -> web.Response:
    """The page, with ``csrf_token`` and ``signed_in`` (a session: sign-out is offered)
    in its context. Before sign-in the
    browser's token cookie is kept, or a new one set."""
    session = session_of(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    token = session.csrf_token() if session else cookie or csrf.new_token()
    page = {
        **context,
        "csrf_token": token,
        "csrf_field": csrf.CSRF_FIELD,
        "signed_in": session is not None,
    }
    response = aiohttp_jinja2.render_template(template, request, page, status=status)
    response.headers["Cache-Control"] = "no-store"
    if token != cookie:
        set_cookie(response, request, CSRF_COOKIE, token, http_only=False)
    return response


# What a console page says of an id it does not know: its noun, why, where to go back.
_MISSING = {
    "tasks": ("task", "it may have been deleted", "/"),
    "executions": (
        "execution",
        "it may have been deleted, or removed by retention",
        "/console/executions",
    ),
    "cabinets": ("cabinet", "it may have been deleted", "/console/cabinets"),
}


def missing(request: web.Request, nav: str, identifier: str) -> web.Response:
    """The 404 page for an unknown task, execution or cabinet (``nav`` names the list)."""
    thing, reason, back = _MISSING[nav]
    context = {"nav": nav, "thing": thing, "reason": reason, "back": back, "id": identifier}
    return render(request, "missing.html", context, status=404)


def see_other(location: str) -> web.Response:
    """A redirect after a form (303: the browser follows it with GET)."""
    return web.Response(status=303, headers={"Location": location})
