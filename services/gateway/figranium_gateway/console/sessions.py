"""Console sessions: the API key, given once at sign-in, exchanged for a cookie.

The cookie holds 256 random bits; PostgreSQL holds only their SHA-256 digest (a dump
yields no session), so every gateway replica recognises it. A session is tied to the
key it was opened with (``key_mark``): once the key changes, its sessions end on every
replica at the next request, whether or not the rows were deleted yet.

The CSRF token of a session is derived from its secret (HMAC), so a token planted in the
``figranium_csrf`` cookie by anyone who cannot read the session cookie is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from figranium_gateway.state import CONFIG, POOL
from figranium_gateway.store import console_sessions as store

SESSION_COOKIE = "figranium_session"
CSRF_COOKIE = "figranium_csrf"
LIFETIME = timedelta(days=7)  # at most, however active
IDLE = timedelta(hours=12)  # unused this long: ended
TOUCH_AFTER = timedelta(minutes=1)  # last-seen is written at most this often


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def key_mark(key_digest: str) -> str:
    """What a session records of the API key it was opened with (not the key's digest
    itself, which the settings row keeps)."""
    return _sha256("console session key:" + key_digest)


@dataclass(frozen=True)
class Session:
    secret: str

    @property
    def id_digest(self) -> str:
        return _sha256(self.secret)

    def csrf_token(self) -> str:
        return hmac.new(self.secret.encode(), b"csrf", hashlib.sha256).hexdigest()


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https: directly, or through a trusted proxy."""
    if request.secure:
        return True
    if not request.app[CONFIG].trust_forwarded_for:
        return False
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


def set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, *, http_only: bool
) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=http_only,
        samesite="Strict",
        secure=is_https(request),
        max_age=int(LIFETIME.total_seconds()),
    )


async def open_session(request: web.Request, key_digest: str) -> Session:
    session = Session(secrets.token_urlsafe(32))
    await store.create_session(request.app[POOL], session.id_digest, key_mark(key_digest), LIFETIME)
    return session


async def current_session(request: web.Request, key_digest: str) -> Session | None:
    """The live session the request's cookie names, if any."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    session = Session(secret)
    alive = await store.touch_session(
        request.app[POOL], session.id_digest, key_mark(key_digest), IDLE, TOUCH_AFTER
    )
    return session if alive else None


def start(response: web.StreamResponse, request: web.Request, session: Session) -> None:
    """Hand the browser its session and the session's CSRF token."""
    set_cookie(response, request, SESSION_COOKIE, session.secret, http_only=True)
    set_cookie(response, request, CSRF_COOKIE, session.csrf_token(), http_only=False)


async def end(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    await store.end_session(request.app[POOL], session.id_digest)
    response.del_cookie(SESSION_COOKIE, path="/")
