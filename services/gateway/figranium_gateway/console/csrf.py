"""CSRF: a browser holding the session cookie sends it on any site's forms and fetches,
so a request that changes state must also carry a token only our own pages can read.

Double submit: the token is in the ``figranium_csrf`` cookie (readable by the
console's scripts, SameSite=Strict) and must come back in the ``X-CSRF-Token`` header,
or, from a plain form, in its ``csrf_token`` field. With a session the token must also
be the one derived from the session (:meth:`Session.csrf_token`).
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from figranium_gateway.console.sessions import CSRF_COOKIE
from figranium_gateway.errors import ApiError
from figranium_gateway.multipart_forms import first_field

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


def new_token() -> str:
    return secrets.token_hex(32)


async def presented_token(request: web.Request) -> str:
    """The header's token, else a plain form's field, else a multipart form's first
    part when it is the field (the rest of an upload's stream stays unread)."""
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    if request.content_type == _MULTIPART:
        return await first_field(request, CSRF_FIELD)
    if request.content_type != _FORM:
        return ""
    field = (await request.post()).get(CSRF_FIELD)
    return field if isinstance(field, str) else ""


async def check(request: web.Request, expected: str | None) -> None:
    """Refuse (403) a state-changing request without the right token; ``expected`` is the
    session's token, None before sign-in (then the cookie alone is the reference)."""
    if request.method not in STATE_CHANGING:
        return
    token = await presented_token(request)
    if not token:
        raise ApiError(
            403,
            "CSRF_TOKEN_MISSING",
            f"a request changing state with the console's cookie needs the {CSRF_HEADER}"
            " header (the figranium_csrf cookie's value)",
        )
    cookie = request.cookies.get(CSRF_COOKIE, "")
    reference = cookie if expected is None else expected
    if not (
        cookie
        and hmac.compare_digest(token.encode(), cookie.encode())
        and hmac.compare_digest(token.encode(), reference.encode())
    ):
        raise ApiError(403, "CSRF_TOKEN_INVALID", "the CSRF token does not match this session")
