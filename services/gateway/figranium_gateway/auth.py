"""API-key authentication, in every form Figranium's clients send it."""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets

import structlog
from aiohttp import web

from figranium_common.settings import Settings
from figranium_gateway import store
from figranium_gateway.api_key import API_KEY_SETTING, ApiKeyCache, as_digest, key_digest
from figranium_gateway.errors import Handler, error_response
from figranium_gateway.routes import docs
from figranium_gateway.state import AUTH, THROTTLE

log = structlog.get_logger(__name__)

PUBLIC_PATHS = frozenset({"/api/health"}) | docs.PUBLIC_PATHS


def generate_api_key() -> str:
    return "fig_" + secrets.token_urlsafe(32)


async def api_key_cache(settings: Settings, pool: store.Pool) -> ApiKeyCache:
    """The key as this replica checks it; only a stored key can change while running."""
    digest = await resolve_api_key(settings, pool)
    if digest is None:
        return ApiKeyCache(pool, "off", None)
    return ApiKeyCache(pool, "environment" if settings.api_key else "stored", digest)


async def resolve_api_key(settings: Settings, pool: store.Pool) -> str | None:
    """The digest of the key requests must carry, or None when authentication is off.

    Secure by default: with no key configured, the first start generates one, stores its
    digest and prints it once; every later start (and every replica) reads the stored one.
    """
    if settings.auth == "off":
        log.warning("auth.disabled", reason="FIGRANIUM_AUTH=off: every request is accepted")
        return None
    if settings.api_key:
        return key_digest(settings.api_key)
    generated = generate_api_key()
    stored, created = await store.setting_insert_if_absent(
        pool, API_KEY_SETTING, key_digest(generated)
    )
    if created:
        log.warning(
            "auth.api_key_generated",
            api_key=generated,
            note="shown once; send it as x-api-key or Authorization: Bearer",
        )
    if not isinstance(stored, str):
        raise RuntimeError("stored api_key setting is not a string")
    return as_digest(stored)


def header_keys(request: web.Request) -> list[str]:
    keys = [request.headers.get("x-api-key", ""), request.headers.get("key", "")]
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        keys.append(authorization[7:].strip())
    return [k for k in keys if k]


async def presented_keys(request: web.Request) -> list[str]:
    keys = header_keys(request)
    # EventSource (the change stream) and <img src> cannot send headers. Access logs and
    # proxies may record URLs, so headers stay the better choice wherever they are possible.
    for name in ("key", "apiKey"):
        keys.extend(request.query.getall(name, []))
    # Any content type: `curl -d '{"apiKey": ...}'` sends form-urlencoded JSON.
    if request.can_read_body and not request.content_type.startswith("multipart/"):
        raw = await request.read()  # cached by aiohttp; handlers read it again
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            keys.extend(str(body.get(name, "")) for name in ("apiKey", "key"))
    return [k for k in keys if k]


def key_matches(expected_digest: str, candidates: list[str]) -> bool:
    wanted = expected_digest.encode()
    matched = False
    for candidate in candidates:
        # compare_digest on every candidate: no early exit that would leak which matched
        matched |= hmac.compare_digest(wanted, key_digest(candidate).encode())
    return matched


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.method == "OPTIONS":
        return await handler(request)
    expected = await request.app[AUTH].current()
    if expected is None:
        return await handler(request)
    throttle = request.app[THROTTLE]
    client = throttle.client_of(request)
    locked_for = throttle.retry_after(client)
    if locked_for:
        return _locked_out(locked_for)
    if key_matches(expected, await presented_keys(request)):
        return await handler(request)
    delay = throttle.failed(client)
    locked_for = throttle.retry_after(client)
    if locked_for:
        log.warning("auth.client_locked_out", client=client, seconds=locked_for)
        return _locked_out(locked_for)
    if delay:
        await asyncio.sleep(delay)
    return error_response(401, "UNAUTHORIZED", "a valid API key is required")


def _locked_out(seconds: int) -> web.Response:
    response = error_response(
        429,
        "TOO_MANY_FAILED_AUTHENTICATIONS",
        f"too many requests with a wrong API key from this client; retry in {seconds} s",
    )
    response.headers["Retry-After"] = str(seconds)
    return response
