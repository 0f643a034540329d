"""Creating, changing and deleting credentials for third parties (Baserow): the one path
the API's credential routes (``routes.credentials``) and the console's credential pages
share, so both validate and store alike.

Tokens are sealed at rest (``store.credentials``) and never shown: answers carry the
redacted ``••••••••`` instead, and sending that value back keeps the stored token.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.errors import InvalidUrlError
from figranium_common.outbound_urls import check_url
from figranium_gateway.errors import ApiError
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import credentials as credential_store
from figranium_gateway.store.credentials import Credential

log = structlog.get_logger(__name__)

PROVIDERS = ("baserow",)
REDACTED = "••••••••"
REDACTION_MARK = "•"
# Tokens travel in a header: only what a header carries unchanged (no CR/LF injection).
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CredentialConfigIn(BaseModel):
    baseUrl: str | None = Field(
        default=None,
        max_length=2048,
        description="the Baserow server, e.g. https://api.baserow.io (http or https)",
    )
    token: str | None = Field(
        default=None,
        max_length=4096,
        description="a Baserow database token; stored encrypted, never answered."
        " On update, the redacted value (containing •) or an empty one keeps the stored token,"
        " unless baseUrl moves to another scheme, host or port (then the token is required).",
    )


class CredentialBody(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    provider: str | None = Field(default=None, max_length=100, description='only "baserow"')
    config: CredentialConfigIn | None = None


class CredentialUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=200, description="empty: keep the name")
    config: CredentialConfigIn | None = None


def not_found(credential_id: str) -> ApiError:
    return ApiError(404, "CREDENTIAL_NOT_FOUND", f"no credential {credential_id!r}")


async def found(app: web.Application, credential_id: str) -> Credential:
    """The stored credential; 404 ``CREDENTIAL_NOT_FOUND`` when there is none."""
    # PostgreSQL text cannot hold NUL: such an id cannot exist, and must not reach the driver.
    credential = (
        None
        if "\x00" in credential_id
        else await credential_store.get_credential(app[POOL], credential_id)
    )
    if credential is None:
        raise not_found(credential_id)
    return credential


async def _checked_base_url(app: web.Application, raw: str) -> str:
    """The base URL trimmed, without trailing slash, allowed by the outbound URL rules."""
    base_url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            raise InvalidUrlError("put the token in config.token, not in the URL")
        if parts.query or parts.fragment:
            raise InvalidUrlError("only scheme, host, port and path")
        await check_url(base_url, allow_private=app[CONFIG].allow_private_networks)
    except InvalidUrlError as exc:
        raise ApiError(400, "INVALID_BASE_URL", f"config.baseUrl: {exc.details}") from None
    except ValueError as exc:  # urlsplit's bad ports, and IDNA names that cannot be encoded
        raise ApiError(
            400, "INVALID_BASE_URL", f"config.baseUrl: not a valid URL ({exc})"
        ) from None
    return base_url


def _checked_token(raw: str) -> str:
    token = raw.strip()
    if not _TOKEN_CHARS.fullmatch(token):
        # The message never repeats the token.
        raise ApiError(
            400, "INVALID_BODY", "config.token: only visible ASCII characters (sent as a header)"
        )
    return token


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one spelled out) of a checked URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _kept(token: str | None) -> bool:
    """An absent, empty or redacted token means: keep the stored one."""
    return token is None or not token.strip() or REDACTION_MARK in token


async def create(app: web.Application, body: CredentialBody) -> Credential:
    """Check and save a new credential (its token sealed)."""
    name = (body.name or "").strip()
    provider = (body.provider or "").strip()
    if not name or not provider or body.config is None:
        raise ApiError(400, "MISSING_FIELDS", "name, provider and config are required")
    if provider not in PROVIDERS:
        raise ApiError(
            400, "UNSUPPORTED_PROVIDER", f"provider {provider!r} is not supported; use baserow"
        )
    if not (body.config.token or "").strip() or not (body.config.baseUrl or "").strip():
        raise ApiError(400, "MISSING_CONFIG_FIELDS", "config.baseUrl and config.token are required")
    token = _checked_token(body.config.token or "")
    base_url = await _checked_base_url(app, body.config.baseUrl or "")
    credential = await credential_store.insert_credential(
        app[POOL],
        app[BOX],
        credential_id=f"cred_{secrets.token_hex(8)}",
        name=name,
        provider=provider,
        base_url=base_url,
        token=token,
    )
    log.info("credential.created", credential_id=credential.id, provider=provider)
    return credential


async def update(app: web.Application, credential_id: str, body: CredentialUpdate) -> Credential:
    """Change a credential's name, base URL or token (empty or redacted: kept)."""
    current = await found(app, credential_id)
    name = (body.name or "").strip() or None
    config = body.config or CredentialConfigIn()
    base_url = None
    if config.baseUrl is not None and config.baseUrl.strip():
        base_url = await _checked_base_url(app, config.baseUrl)
    token = None if _kept(config.token) else _checked_token(config.token or "")
    if (
        token is None
        and base_url is not None
        and current.has_token
        and origin(base_url) != origin(current.base_url)
    ):
        # The stored token was given for one server; sending it to another must be the
        # caller's explicit choice, or a changed URL would hand it to whoever runs that one.
        raise ApiError(
            400,
            "TOKEN_REQUIRED",
            "config.token: changing the base URL's scheme, host or port needs the token again",
        )
    updated = await credential_store.update_credential(
        app[POOL], app[BOX], current.id, name=name, base_url=base_url, token=token
    )
    if updated is None:  # deleted meanwhile
        raise not_found(current.id)
    log.info("credential.updated", credential_id=updated.id, token_changed=token is not None)
    return updated


async def delete(app: web.Application, credential_id: str) -> None:
    """Delete a credential; 404 ``CREDENTIAL_NOT_FOUND`` when there is none."""
    deleted = "\x00" not in credential_id and await credential_store.delete_credential(
        app[POOL], credential_id
    )
    if not deleted:
        raise not_found(credential_id)
    log.info("credential.deleted", credential_id=credential_id)
