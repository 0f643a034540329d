"""Changing the stored API key: the rules a new key follows and what a change ends.

Shared by ``POST /api/settings/api-key`` and the console's settings page, so both accept
the same keys and a change has the same effect from either: the digest is stored, every
replica is told, and every console session ends.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web

from figranium_gateway.api_key import API_KEY_SETTING, MIN_API_KEY_LENGTH, announce
from figranium_gateway.auth import generate_api_key
from figranium_gateway.errors import ApiError
from figranium_gateway.state import AUTH, CONFIG, NC, POOL
from figranium_gateway.store import console_sessions
from figranium_gateway.store import settings as settings_store

log = structlog.get_logger(__name__)

MAX_API_KEY_LENGTH = 512  # as Figranium
# Keys travel in headers, so only what a header can carry unchanged: visible ASCII.
_API_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")


def refuse_environment_key(app: web.Application) -> None:
    """409 when the key comes from ``FIGRANIUM_API_KEY``: it cannot be changed here."""
    if app[CONFIG].api_key:
        raise ApiError(
            409,
            "API_KEY_FROM_ENVIRONMENT",
            "the API key comes from FIGRANIUM_API_KEY, which always wins over a stored key;"
            " change the variable and restart the gateways instead",
        )


def check_key_text(wanted: str) -> None:
    """400 for a key too long, or with characters a header cannot carry."""
    if len(wanted) > MAX_API_KEY_LENGTH:
        raise ApiError(
            400, "API_KEY_TOO_LONG", f"apiKey is at most {MAX_API_KEY_LENGTH} characters"
        )
    if wanted and not _API_KEY_CHARS.match(wanted):
        raise ApiError(
            400, "INVALID_BODY", "apiKey: only visible ASCII characters (it is sent as a header)"
        )


def check_key_length(wanted: str) -> None:
    """400 for a chosen key shorter than the minimum (empty means: generate one)."""
    if wanted and len(wanted) < MIN_API_KEY_LENGTH:
        raise ApiError(
            400, "API_KEY_TOO_SHORT", f"apiKey is at least {MIN_API_KEY_LENGTH} characters"
        )


async def replace_api_key(app: web.Application, wanted: str) -> str:
    """Store ``wanted`` (already checked), or a generated key when it is empty, as the API
    key; answers the new key. Every console session ends."""
    cache = app[AUTH]
    new_key = wanted or generate_api_key()
    await settings_store.set_setting(app[POOL], API_KEY_SETTING, cache.hasher.digest(new_key))
    if cache.source == "stored":
        cache.changed_here(new_key)
    await announce(app[NC], API_KEY_SETTING)
    # Sessions are tied to the key they were opened with anyway; this removes their rows.
    ended = await console_sessions.end_all_sessions(app[POOL])
    log.warning(
        "auth.api_key_changed",
        generated=not wanted,
        auth_source=cache.source,
        console_sessions_ended=ended,
    )
    return new_key
