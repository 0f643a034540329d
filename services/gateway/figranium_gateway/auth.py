"""API-key authentication, in every form Figranium's clients send it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from figranium_common.config import Config
from figranium_common.db import Pool
from figranium_common.jsontypes import JsonValue
from figranium_common.secretbox import SecretBox
from figranium_gateway import api_docs
from figranium_gateway.api_key import (
    API_KEY_SETTING,
    DIGEST_PREFIX,
    MIN_API_KEY_LENGTH,
    SUBKEY_PURPOSE,
    ApiKeyCache,
    KeyHasher,
)
from figranium_gateway.errors import ApiError, Handler, error_response, retry_later
from figranium_gateway.request_input import CREDENTIAL_FIELDS, parse_json
from figranium_gateway.secret_file import write_secret_file
from figranium_gateway.state import AUTH, THROTTLE
from figranium_gateway.store import settings as settings_store

log = structlog.get_logger(__name__)

PUBLIC_PATHS = frozenset({"/api/health"}) | api_docs.PUBLIC_PATHS
# Request key set by a middleware running before this one that already admitted the
# request (the console's session middleware): no key is asked for.
ADMITTED = "auth.admitted"


def generate_api_key() -> str:
    return "fig_" + secrets.token_urlsafe(32)


API_KEY_FILE = "api-key"


async def api_key_cache(config: Config, pool: Pool, box: SecretBox) -> ApiKeyCache:
    """The key as this replica checks it; only a stored key can change while running."""
    hasher = KeyHasher(box.subkey(SUBKEY_PURPOSE))
    digest = await resolve_api_key(config, pool, hasher)
    if digest is None:
        return ApiKeyCache(pool, "off", None, hasher)
    return ApiKeyCache(pool, "environment" if config.api_key else "stored", digest, hasher)


async def resolve_api_key(config: Config, pool: Pool, hasher: KeyHasher) -> str | None:
    """The digest of the key requests must carry, or None when authentication is off.

    Secure by default: with no key configured, the first start generates one, stores its
    digest and writes the key to a 0600 file in the data folder (never to the log); every
    later start (and every replica) reads the stored digest.
    """
    if config.auth == "off":
        log.warning("auth.disabled", reason="FIGRANIUM_AUTH=off: every request is accepted")
        return None
    if config.api_key:
        if len(config.api_key) < MIN_API_KEY_LENGTH:
            log.warning(
                "auth.api_key_short",
                length=len(config.api_key),
                note=f"FIGRANIUM_API_KEY should be at least {MIN_API_KEY_LENGTH} characters",
            )
        return hasher.digest(config.api_key)
    generated = generate_api_key()
    stored, created = await settings_store.setting_insert_if_absent(
        pool, API_KEY_SETTING, hasher.digest(generated)
    )
    if created:
        path = write_secret_file(config.data_dir / API_KEY_FILE, generated)
        log.warning(
            "auth.api_key_generated",
            path=str(path),
            note="the key is in this file (mode 0600); send it as x-api-key or"
            " Authorization: Bearer",
        )
    if not isinstance(stored, str):
        raise RuntimeError("stored api_key setting is not a string")
    if not stored.startswith(DIGEST_PREFIX):
        stored = await migrate(pool, hasher)
    return hasher.from_stored(stored)


async def migrate(pool: Pool, hasher: KeyHasher) -> str:
    """Re-key a stored value of an earlier format (bare SHA-256, or clear) in place.

    Under the settings row's lock, and a no-op for a value already migrated, so replicas
    starting together each run it harmlessly.
    """

    def rekey(current: JsonValue) -> JsonValue:
        if isinstance(current, str) and current and not current.startswith(DIGEST_PREFIX):
            return hasher.from_stored(current)
        return current

    migrated = await settings_store.update_setting(pool, API_KEY_SETTING, rekey)
    if not isinstance(migrated, str):
        raise RuntimeError("stored api_key setting is not a string")
    log.info("auth.api_key_digest_migrated", format=DIGEST_PREFIX.rstrip(":"))
    return migrated


def header_keys(request: web.Request) -> list[str]:
    keys = [request.headers.get("x-api-key", ""), request.headers.get("key", "")]
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        keys.append(authorization[7:].strip())
    return [k for k in keys if k]


def query_keys(request: web.Request) -> list[str]:
    # EventSource (the change stream) and <img src> cannot send headers. Access logs and
    # proxies may record URLs, so headers stay the better choice wherever they are possible.
    return [k for name in ("key", "apiKey") for k in request.query.getall(name, []) if k]


async def body_keys(request: web.Request) -> list[str]:
    """Keys in a JSON body; only read for a request that sent no key in a header."""
    # Any content type: `curl -d '{"apiKey": ...}'` sends form-urlencoded JSON.
    if not request.can_read_body or request.content_type.startswith("multipart/"):
        return []
    raw = await request.read()  # cached by aiohttp; handlers read it again
    try:
        body = parse_json(raw) if raw.strip() else None
    except ApiError:  # malformed or nested too deeply: it carries no key
        body = None
    if not isinstance(body, dict):
        return []
    return [k for k in (str(body.get(name, "")) for name in CREDENTIAL_FIELDS) if k]


async def presented_keys(request: web.Request) -> list[str]:
    headers = header_keys(request)
    if headers:
        # A key in a header settles it: the body of a request not yet authenticated is
        # never parsed for one.
        return headers + query_keys(request)
    return query_keys(request) + await body_keys(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.method == "OPTIONS" or request.get(ADMITTED):
        return await handler(request)
    expected = await request.app[AUTH].current()
    if expected is None:
        return await handler(request)
    refused = await key_refusal(request, expected, lambda: presented_keys(request))
    return await handler(request) if refused is None else refused


async def key_refusal(
    request: web.Request, expected: str, keys: Callable[[], Awaitable[list[str]]]
) -> web.Response | None:
    """None when one of the ``keys()`` is the API key (digest ``expected``), else the
    refusal: a wrong key counts towards the client's lockout, wherever it was presented.
    A locked-out client's keys are not even read."""
    throttle = request.app[THROTTLE]
    client = throttle.client_of(request)
    locked_for = throttle.retry_after(client)
    if locked_for:
        return _locked_out(locked_for)
    if request.app[AUTH].hasher.matches(expected, await keys()):
        return None
    delay = throttle.failed(client)
    locked_for = throttle.retry_after(client)
    if locked_for:
        log.warning("auth.client_locked_out", client=client, seconds=locked_for)
        return _locked_out(locked_for)
    if delay:
        await asyncio.sleep(delay)
    return error_response(401, "UNAUTHORIZED", "a valid API key is required")


def _locked_out(seconds: int) -> web.Response:
    return retry_later(
        "TOO_MANY_FAILED_AUTHENTICATIONS",
        f"too many requests with a wrong API key from this client; retry in {seconds} s",
        seconds,
    )
