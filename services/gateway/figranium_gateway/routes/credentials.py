"""Credentials for third parties (Baserow), as Figranium's /api/credentials.

Tokens are sealed at rest (``store.credentials``) and never answered: every answer carries
the redacted ``••••••••`` instead, and a client sending that value back keeps the stored
token. The Baserow proxy routes let the editor list databases and tables without ever
seeing the token.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, RootModel

from figranium_common import baserow
from figranium_common.errors import FigraniumError, InvalidUrlError
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.outbound_http import safe_request
from figranium_common.outbound_urls import check_url
from figranium_common.secretbox import SecretError
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import credentials as credential_store
from figranium_gateway.store.credentials import Credential

log = structlog.get_logger(__name__)
api = Router("credentials")

PROVIDERS = ("baserow",)
REDACTED = "••••••••"
REDACTION_MARK = "•"
BASEROW_TIMEOUT_SECONDS = 15.0
MAX_BASEROW_ANSWER = 5 * 1024 * 1024
# Tokens travel in a header: only what a header carries unchanged (no CR/LF injection).
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_BASEROW_ID = re.compile(r"[0-9]{1,18}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- models ---------------------------------------------------------------------------


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


class CredentialConfigOut(BaseModel):
    baseUrl: str
    token: str = Field(description=f"{REDACTED!r} when a token is stored, else empty")


class CredentialOut(BaseModel):
    id: str
    name: str
    provider: str
    config: CredentialConfigOut


class CredentialList(RootModel[list[CredentialOut]]):
    pass


class DeletedAnswer(BaseModel):
    success: bool


class BaserowDatabase(BaseModel):
    id: int
    name: str = Field(
        description="Baserow tells a database token no database names: the credential's"
        ' name when the token sees one database, else "Database <id>"'
    )
    workspaceName: str = Field(description="empty: a database token cannot learn it")


class BaserowDatabaseList(RootModel[list[BaserowDatabase]]):
    pass


class BaserowTable(BaseModel):
    id: int
    name: str


class BaserowTableList(RootModel[list[BaserowTable]]):
    pass


# --- helpers --------------------------------------------------------------------------


def _out(credential: Credential) -> JsonObject:
    config = CredentialConfigOut(
        baseUrl=credential.base_url, token=REDACTED if credential.has_token else ""
    )
    out = CredentialOut(
        id=credential.id, name=credential.name, provider=credential.provider, config=config
    )
    return out.model_dump()


def _credential_id(request: web.Request) -> str:
    return request.match_info["credential_id"]


def _not_found(credential_id: str) -> ApiError:
    return ApiError(404, "CREDENTIAL_NOT_FOUND", f"no credential {credential_id!r}")


async def _found(request: web.Request) -> Credential:
    credential_id = _credential_id(request)
    # PostgreSQL text cannot hold NUL: such an id cannot exist, and must not reach the driver.
    found = (
        None
        if "\x00" in credential_id
        else await credential_store.get_credential(request.app[POOL], credential_id)
    )
    if found is None:
        raise _not_found(credential_id)
    return found


async def _checked_base_url(request: web.Request, raw: str) -> str:
    """The base URL trimmed, without trailing slash, allowed by the outbound URL rules."""
    base_url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            raise InvalidUrlError("put the token in config.token, not in the URL")
        if parts.query or parts.fragment:
            raise InvalidUrlError("only scheme, host, port and path")
        await check_url(base_url, allow_private=request.app[CONFIG].allow_private_networks)
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


# --- CRUD -----------------------------------------------------------------------------


@api.get("/api/credentials", "Saved credentials (tokens redacted)", responses={200: CredentialList})
async def list_credentials(request: web.Request) -> web.Response:
    credentials = await credential_store.list_credentials(request.app[POOL])
    return web.json_response([_out(credential) for credential in credentials])


@api.post(
    "/api/credentials",
    "Save a Baserow credential (the token is encrypted at rest)",
    body=CredentialBody,
    responses={200: CredentialOut, 400: ErrorBody},
)
async def create_credential(request: web.Request) -> web.Response:
    body = await read_model(request, CredentialBody)
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
    base_url = await _checked_base_url(request, body.config.baseUrl or "")
    credential = await credential_store.insert_credential(
        request.app[POOL],
        request.app[BOX],
        credential_id=f"cred_{secrets.token_hex(8)}",
        name=name,
        provider=provider,
        base_url=base_url,
        token=token,
    )
    log.info("credential.created", credential_id=credential.id, provider=provider)
    return web.json_response(_out(credential))


@api.put(
    "/api/credentials/{credential_id}",
    "Change a credential's name, base URL or token",
    body=CredentialUpdate,
    responses={200: CredentialOut, 400: ErrorBody, 404: ErrorBody},
)
async def update_credential(request: web.Request) -> web.Response:
    body = await read_model(request, CredentialUpdate)
    current = await _found(request)
    name = (body.name or "").strip() or None
    config = body.config or CredentialConfigIn()
    base_url = None
    if config.baseUrl is not None and config.baseUrl.strip():
        base_url = await _checked_base_url(request, config.baseUrl)
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
        request.app[POOL], request.app[BOX], current.id, name=name, base_url=base_url, token=token
    )
    if updated is None:  # deleted meanwhile
        raise _not_found(current.id)
    log.info("credential.updated", credential_id=updated.id, token_changed=token is not None)
    return web.json_response(_out(updated))


@api.delete(
    "/api/credentials/{credential_id}",
    "Delete a credential (tasks pushing through it then fail their output step)",
    responses={200: DeletedAnswer, 404: ErrorBody},
)
async def delete_credential(request: web.Request) -> web.Response:
    credential_id = _credential_id(request)
    deleted = "\x00" not in credential_id and await credential_store.delete_credential(
        request.app[POOL], credential_id
    )
    if not deleted:
        raise _not_found(credential_id)
    log.info("credential.deleted", credential_id=credential_id)
    return web.json_response(DeletedAnswer(success=True).model_dump())


# --- Baserow proxy --------------------------------------------------------------------


async def _baserow_get(request: web.Request, credential: Credential, path: str) -> JsonValue:
    """GET a Baserow API path with the credential's token; Baserow's JSON answer."""
    if credential.provider != "baserow":
        raise ApiError(
            400, "UNSUPPORTED_PROVIDER", f"credential {credential.id!r} is not a Baserow one"
        )
    try:
        token = credential.open_token(request.app[BOX])
    except SecretError as exc:
        raise ApiError(409, exc.code, exc.details) from None
    try:
        response = await safe_request(
            "GET",
            f"{credential.base_url}{path}",
            allow_private=request.app[CONFIG].allow_private_networks,
            headers=baserow.auth_headers(token),
            timeout=BASEROW_TIMEOUT_SECONDS,
            max_bytes=MAX_BASEROW_ANSWER,
        )
    except InvalidUrlError as exc:
        raise ApiError(400, "INVALID_BASE_URL", f"config.baseUrl: {exc.details}") from None
    except FigraniumError as exc:
        raise ApiError(502, "BASEROW_UNREACHABLE", exc.details) from None
    if not 200 <= response.status < 300:
        # Baserow's refusals (a wrong token: 401) are the client's to fix; its failures are
        # a bad gateway from here.
        status = response.status if 400 <= response.status < 500 else 502
        raise ApiError(status, "BASEROW_ERROR", baserow.problem(response))
    try:
        answer: JsonValue = response.json()
    except ValueError:
        raise ApiError(502, "BASEROW_ERROR", "Baserow's answer is not JSON") from None
    return answer


# The one listing Baserow gives a database token (its applications and per-database
# listings take a user's JWT): every table the token may use, with its database's id.
ALL_TABLES_PATH = "/api/database/tables/all-tables/"


def token_tables(answer: JsonValue) -> list[tuple[int, BaserowTable]]:
    """(database id, table) for each table in Baserow's ``all-tables`` answer."""
    if not isinstance(answer, list):
        raise ApiError(502, "BASEROW_ERROR", "Baserow's answer is not a list of tables")
    found = []
    for item in answer:
        if not isinstance(item, dict):
            continue
        table_id, database_id = _baserow_int(item.get("id")), _baserow_int(item.get("database_id"))
        if table_id is not None and database_id is not None:
            found.append((database_id, BaserowTable(id=table_id, name=str(item.get("name") or ""))))
    return found


def _baserow_int(value: JsonValue) -> int | None:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if _BASEROW_ID.fullmatch(text) else None


def databases_of(
    tables: list[tuple[int, BaserowTable]], credential_name: str
) -> list[BaserowDatabase]:
    """The databases holding the token's tables, in Baserow's order."""
    ids = list(dict.fromkeys(database_id for database_id, _ in tables))
    named = len(ids) == 1 and credential_name
    return [
        BaserowDatabase(
            id=database_id,
            name=credential_name if named else f"Database {database_id}",
            workspaceName="",
        )
        for database_id in ids
    ]


@api.get(
    "/api/credentials/{credential_id}/proxy/baserow/databases",
    "The Baserow databases the credential's token can see (numeric ids)",
    responses={
        200: BaserowDatabaseList,
        400: ErrorBody,
        403: ErrorBody,
        404: ErrorBody,
        409: ErrorBody,
        502: ErrorBody,
    },
)
async def baserow_databases(request: web.Request) -> web.Response:
    credential = await _found(request)
    tables = token_tables(await _baserow_get(request, credential, ALL_TABLES_PATH))
    databases = databases_of(tables, credential.name)
    return web.json_response([database.model_dump() for database in databases])


@api.get(
    "/api/credentials/{credential_id}/proxy/baserow/databases/{database_id}/tables",
    "The tables of one Baserow database the credential's token can see (numeric ids)",
    responses={
        200: BaserowTableList,
        400: ErrorBody,
        403: ErrorBody,
        404: ErrorBody,
        409: ErrorBody,
        502: ErrorBody,
    },
)
async def baserow_tables(request: web.Request) -> web.Response:
    database_id = request.match_info["database_id"]
    if not _BASEROW_ID.fullmatch(database_id):
        raise ApiError(400, "INVALID_DATABASE_ID", "databaseId must be a number")
    credential = await _found(request)
    tables = token_tables(await _baserow_get(request, credential, ALL_TABLES_PATH))
    wanted = int(database_id)
    mine = [table.model_dump() for in_database, table in tables if in_database == wanted]
    if not mine:
        raise ApiError(
            404,
            "DATABASE_NOT_FOUND",
            f"the credential's token sees no table in Baserow database {database_id}",
        )
    return web.json_response(mine)
