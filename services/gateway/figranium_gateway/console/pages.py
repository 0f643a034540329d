"""The console's way in and out (sign-in, sign-out) and its static files."""

from __future__ import annotations

from aiohttp import web

from figranium_gateway.auth import key_refusal
from figranium_gateway.console import sessions
from figranium_gateway.console.assets import CACHE_CONTROL, URL_PREFIX, console_assets
from figranium_gateway.console.gate import HOME, SIGN_IN, session_of
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.errors import ApiError
from figranium_gateway.routing import Router
from figranium_gateway.state import AUTH

api = Router("console")
_HTML = {200: "text/html"}
KEY_FIELD = "apiKey"


@api.get(SIGN_IN, "The console's sign-in page", public=True, content_types=_HTML)
async def sign_in_page(request: web.Request) -> web.Response:
    if await request.app[AUTH].current() is None:
        return see_other(HOME)
    return render(request, "sign_in.html", {"error": None})


@api.post(
    SIGN_IN,
    "Sign in to the console with the API key (form field apiKey); sets the session cookie",
    public=True,
    responses={303: None, 401: None, 403: None, 429: None},
    content_types={401: "text/html", 429: "text/html"},
)
async def sign_in(request: web.Request) -> web.Response:
    expected = await request.app[AUTH].current()
    if expected is None:
        return see_other(HOME)
    form = await request.post()
    key = form.get(KEY_FIELD)

    async def presented() -> list[str]:
        return [key] if isinstance(key, str) and key else []

    refused = await key_refusal(request, expected, presented)
    if refused is not None:
        retry = refused.headers.get("Retry-After")
        error = (
            f"Too many wrong keys from this address: try again in {retry} s."
            if retry
            else "That is not the API key."
        )
        page = render(request, "sign_in.html", {"error": error}, status=refused.status)
        if retry:
            page.headers["Retry-After"] = retry
        return page
    session = await sessions.open_session(request, expected)
    response = see_other(HOME)
    sessions.start(response, request, session)
    return response


@api.post(
    "/console/sign-out",
    "End this console session",
    responses={303: None, 403: None},
)
async def sign_out(request: web.Request) -> web.Response:
    response = see_other(SIGN_IN)
    session = session_of(request)
    if session is not None:
        await sessions.end(request, response, session)
    return response


@api.get(
    URL_PREFIX + "{name}",
    "A static file of the console (fingerprinted name, cached for a year)",
    public=True,
    responses={200: None, 404: None},
    content_types={200: "*/*"},
)
async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    asset = console_assets().served(name)
    if asset is None:
        raise ApiError(404, "NOT_FOUND", f"no console file {name!r}")
    return web.Response(
        body=asset.body,
        content_type=asset.content_type,
        headers={"Cache-Control": CACHE_CONTROL},
    )
