"""The middleware that admits browsers by their console session.

It runs before ``auth_middleware``. A request carrying an API key in a header is left to
that middleware untouched (API clients see no change). Otherwise a live session cookie
admits the request (marked with ``auth.ADMITTED``) once its CSRF token checks out; the
sign-in page and the static files need no session; and a console page asked for without
one redirects to the sign-in page instead of answering 401.
"""

from __future__ import annotations

from aiohttp import web

from figranium_gateway.auth import ADMITTED, header_keys
from figranium_gateway.console import csrf
from figranium_gateway.console.assets import URL_PREFIX
from figranium_gateway.console.sessions import Session, current_session
from figranium_gateway.errors import Handler
from figranium_gateway.state import AUTH

HOME = "/"
SIGN_IN = "/console/sign-in"
SESSION = "console.session"  # request key: the Session that admitted the request


def is_console(path: str) -> bool:
    return path == HOME or path.startswith("/console/")


def needs_no_session(path: str) -> bool:
    return path == SIGN_IN or path.startswith(URL_PREFIX)


def session_of(request: web.Request) -> Session | None:
    session: Session | None = request.get(SESSION)
    return session


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS" or header_keys(request):
        return await handler(request)
    expected = await request.app[AUTH].current()
    if expected is None or needs_no_session(request.path):
        # Authentication off, or the way in: console forms still carry the token.
        if is_console(request.path):
            await csrf.check(request, None)
            request[ADMITTED] = True
        return await handler(request)
    session = await current_session(request, expected)
    if session is not None:
        await csrf.check(request, session.csrf_token())
        request[ADMITTED] = True
        request[SESSION] = session
        return await handler(request)
    if is_console(request.path):
        raise web.HTTPSeeOther(SIGN_IN)
    return await handler(request)
